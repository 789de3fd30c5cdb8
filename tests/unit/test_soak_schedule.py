"""The soak's fault schedule (bench/soak_faults.py): the same seed gives the same
schedule, another seed another one, every kind the asked number of times in the window."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from soak_faults import ALL_KINDS, Kind, make_schedule  # noqa: E402


def test_same_seed_same_schedule_and_every_kind_counted() -> None:
    one = make_schedule(7, 160.0, ALL_KINDS, 3)
    assert one == make_schedule(7, 160.0, ALL_KINDS, 3)
    assert one != make_schedule(8, 160.0, ALL_KINDS, 3)
    assert Counter(f.kind for f in one) == {k: 3 for k in ALL_KINDS}
    assert [f.at for f in one] == sorted(f.at for f in one)
    assert all(5.0 <= f.at <= 160.0 for f in one)
    cuts = [f for f in one if f.kind is Kind.CUT]
    assert all(f.target in ("dmz", "fe1", "fe2", "fe3") and 2 <= f.hold <= 6 for f in cuts)
    slurm = [f for f in one if f.kind in (Kind.SLURMCTLD, Kind.SLURMD)]
    assert all(2 <= f.hold <= 6 for f in slurm)  # short: the campaign must still finish
