"""Parsing the runner's progress file that poll fetches: untrusted data, bounded."""

from __future__ import annotations

import json

from remotebridge import jobfolder as jf
from remotebridge.poll.progress import (
    describe,
    describe_end,
    describe_phases,
    estimated_end,
    parse_frames,
    parse_progress,
)


def doc(**kw: object) -> bytes:
    base = {"format": jf.PROGRESS.format, "version": jf.PROGRESS.version, "done": 3,
            "failed": 1, "running": 2, "left": 4, "not_started": 0, "tasks": 10,
            "workers": 2, "at": "2026-12-01T05:00:00+00:00", "final": False,
            "scale": {"cmd": 1.1}, "end": "2026-12-01T08:00:00+00:00",
            "started": "2026-12-01T04:00:00+00:00"}
    base.update(kw)
    return json.dumps(base).encode()


def test_keeps_only_the_known_counters() -> None:
    kept = json.loads(parse_progress(doc()) or "")
    assert kept == {"done": 3, "failed": 1, "running": 2, "left": 4, "not_started": 0,
                    "tasks": 10, "workers": 2, "at": "2026-12-01T05:00:00+00:00",
                    "started": "2026-12-01T04:00:00+00:00", "end": "2026-12-01T08:00:00+00:00"}
    assert describe(json.dumps(kept)).startswith("done 3, failed 1, running 2, left 4")


def test_hostile_progress_is_skipped_or_cleaned() -> None:
    assert parse_progress(doc(format="remotebridge.plan")) is None
    assert parse_progress(doc(version=2)) is None
    assert parse_progress(b'{"format": "remotebridge.progress", "version": 1, "done": NaN}') is None
    assert parse_progress(b"\xff\xfe") is None
    assert parse_progress(b"[1, 2]") is None
    kept = json.loads(parse_progress(doc(done=-1, left="many", at="x" * 100, running=True))
                      or "")
    assert "done" not in kept and "left" not in kept and "at" not in kept
    assert "running" not in kept  # a bool is not a count


def test_frames_for_folders_not_asked_about_end_the_reading() -> None:
    one, two = doc(), doc(done=9)
    raw = b"%d /s/a\n%s%d /s/evil\n%s" % (len(one), one, len(two), two)
    got = parse_frames(raw, {"/s/a", "/s/b"})
    assert list(got) == ["/s/a"] and json.loads(got["/s/a"])["done"] == 3
    assert parse_frames(b"99999 /s/a\n" + one, {"/s/a"}) == {}


def test_estimated_end_from_the_rate_so_far() -> None:
    """An hour for 3 tasks done, 6 to finish (4 left, 2 running): two more hours."""
    assert estimated_end(parse_progress(doc())) == "2026-12-01T07:00:00+00:00"
    assert describe_end(parse_progress(doc())) == "estimated end 2026-12-01T07:00:00+00:00"
    late = describe_end(parse_progress(doc(end="2026-12-01T06:00:00+00:00")))
    assert late.startswith("estimated end 2026-12-01T07:00:00+00:00 (after the walltime end")
    assert estimated_end(parse_progress(doc(left=0, running=0))) == "2026-12-01T05:00:00+00:00"


def test_estimated_end_unknown_without_a_rate() -> None:
    assert estimated_end(parse_progress(doc(done=0))) is None
    assert estimated_end(parse_progress(doc(started="yesterday"))) is None
    assert estimated_end(parse_progress(doc(started=None))) is None
    assert estimated_end(None) is None and estimated_end("[]") is None
    assert describe_end(parse_progress(doc(done=0))) == "estimated end unknown"


def test_per_phase_counts_are_kept_and_shown() -> None:
    phases = {"pre": {"tasks": 2, "done": 2, "elapsed": 3.1},
              "cmd": {"tasks": 10, "done": 5, "elapsed": 600.0},
              "post": {"tasks": 2, "done": 0, "elapsed": 0.0}}
    kept = parse_progress(doc(phases=phases))
    assert json.loads(kept or "")["phases"] == phases
    assert describe_phases(kept) == "pre 2/2 (3.1 s), cmd 5/10 (600.0 s), post 0/2"


def test_hostile_phases_are_dropped() -> None:
    hostile = {"evil\x1b[2J": {"tasks": 1}, "cmd": {"tasks": -1, "done": "5", "elapsed": 1e300},
               "pre": [1, 2], "post": {"tasks": 2, "x": "<script>"}}
    kept = json.loads(parse_progress(doc(phases=hostile)) or "")
    assert kept["phases"] == {"post": {"tasks": 2}}
    assert "phases" not in json.loads(parse_progress(doc(phases="all")) or "")
