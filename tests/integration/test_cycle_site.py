"""The whole chip cycle on the test site: definebyquery -> prepare -> exec -> poll -> full,
through the DMZ and the real Slurm, with the results replayed into the pipeline DB."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from remotebridge.db.engine import read_session
from remotebridge.db.pipeline import ChipProcessedImfile, ChipRun
from tests.support.cycle_site import (  # noqa: F401 - helpers and fixtures moved to tests/support
    BIN,
    rt,
    setup,
)

pytestmark = pytest.mark.site


def test_chip_cycle_through_the_dmz(setup: dict[str, Any]) -> None:
    s = setup
    rid = int(rt(s, "definebyquery", "--label", "demo", "--stage", "chip",
                 "--path-base", str(s["tmp"] / "jobs")).stdout)
    rt(s, "prepare", "--label", "demo")
    (out,) = json.loads(rt(s, "--json", "exec", "--label", "demo").stdout)
    assert out["result"] == "run" and out["remote_id"] == rid
    rt(s, "poll", "--label", "demo", "--force", "--wait", "300")
    (run,) = json.loads(rt(s, "--json", "list", "--label", "demo").stdout)
    assert run["state"] == "full", run
    with read_session(s["engine"]) as sess:
        n = sess.execute(select(func.count()).select_from(ChipProcessedImfile)
                         .where(ChipProcessedImfile.fault == 0)).scalar_one()
        states = set(sess.execute(select(ChipRun.state)).scalars())
    assert n == 4 and states == {"full"}
    products = list((s["tmp"] / "jobs").rglob("*.fits")) + list(s["tmp"].rglob("*.ch.fits"))
    assert products, "the chip images came home"
