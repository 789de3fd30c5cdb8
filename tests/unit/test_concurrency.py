"""Processes racing for the same runs: each run moves exactly once (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter

from sqlalchemy import Engine, func, select

from remotebridge.config import build
from remotebridge.db.bridge import RemoteComponent, RemoteEvent, RemoteRun
from remotebridge.db.engine import make_engine, read_session, write_session
from remotebridge.db.statemachine import claim, transition
from remotebridge.define import define_by_query
from remotebridge.errors import ConcurrentUpdate
from remotebridge.states import RunState
from tests.support.db import add_chipruns

WORKERS = 8


def _claim_worker(url: str, barrier: object, out: object) -> None:
    engine = make_engine(url)
    barrier.wait()  # type: ignore[attr-defined]
    moved: list[int] = []
    while True:
        with write_session(engine) as s:
            ids = claim(s, RunState.NEW, limit=1)
        if not ids:
            break
        with write_session(engine) as s:
            transition(s, ids[0], RunState.NEW, RunState.PENDING, note="race")
        moved.append(ids[0])
    out.put(moved)  # type: ignore[attr-defined]


def _blind_worker(url: str, ids: list[int], barrier: object, out: object) -> None:
    """Skips claiming and races straight for the guarded UPDATE."""
    engine = make_engine(url)
    barrier.wait()  # type: ignore[attr-defined]
    won = []
    for rid in ids:
        try:
            with write_session(engine) as s:
                transition(s, rid, RunState.PENDING, RunState.RUN, job_id=str(rid))
            won.append(rid)
        except ConcurrentUpdate:
            pass
    out.put(won)  # type: ignore[attr-defined]


def _define_worker(url: str, barrier: object, out: object) -> None:
    engine = make_engine(url)
    cfg = build({})
    barrier.wait()  # type: ignore[attr-defined]
    made = []
    while True:
        res = define_by_query(engine, cfg, label="race", stage="chip", limit=7)
        if res.remote_id is None:
            break
        made.append(res.remote_id)
    out.put(made)  # type: ignore[attr-defined]


def _race(target: object, args: tuple[object, ...]) -> list[list[int]]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, out)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return results


def _make_runs(engine: Engine, n: int) -> list[int]:
    with write_session(engine) as s:
        runs = [RemoteRun(stage="chip", label="L", site="demo", state="new", path_base="/x")
                for _ in range(n)]
        s.add_all(runs)
        s.flush()
        return [r.remote_id for r in runs]


def test_eight_processes_claim_each_run_exactly_once(engine: Engine, db_url: str) -> None:
    ids = _make_runs(engine, 40)
    results = _race(_claim_worker, (db_url,))
    counts = Counter(rid for moved in results for rid in moved)
    assert sorted(counts) == ids and set(counts.values()) == {1}
    with read_session(engine) as s:
        events = s.execute(select(func.count()).select_from(RemoteEvent)).scalar_one()
        states = set(s.execute(select(RemoteRun.state)).scalars())
    assert events == 40 and states == {"pending"}


def test_guarded_update_lets_exactly_one_racer_win(engine: Engine, db_url: str) -> None:
    ids = _make_runs(engine, 25)
    with write_session(engine) as s:
        for rid in ids:
            transition(s, rid, RunState.NEW, RunState.PENDING)
    results = _race(_blind_worker, (db_url, ids))
    counts = Counter(rid for won in results for rid in won)
    assert sorted(counts) == ids and set(counts.values()) == {1}


def test_eight_definebyquery_never_share_a_stage_run(engine: Engine, db_url: str) -> None:
    chip_ids = add_chipruns(engine, "race", 100)
    results = _race(_define_worker, (db_url,))
    made = [rid for r in results for rid in r]
    assert len(made) == len(set(made)) == 15  # ceil(100 / 7)
    with read_session(engine) as s:
        comp = list(s.execute(select(RemoteComponent.stage_id)).scalars())
    assert sorted(comp) == chip_ids, "every chipRun in exactly one remote run"
