"""Every legal and illegal transition, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import Engine, select, update

from remotebridge.db.bridge import RemoteComponent, RemoteEvent, RemoteRun
from remotebridge.db.engine import read_session, write_session
from remotebridge.db.statemachine import (
    NOTE_MAX,
    cancel,
    candidates,
    claim,
    held_by_me,
    release,
    renew,
    revert,
    revertauth,
    transition,
)
from remotebridge.errors import ConcurrentUpdate, IllegalTransition, NotFoundError
from remotebridge.states import TRANSITIONS, RunState, is_legal

ALL_PAIRS = list(itertools.product(RunState, RunState))


def _new_run(engine: Engine, state: RunState = RunState.NEW, prev: str | None = None,
             label: str = "L", components: int = 0) -> int:
    with write_session(engine) as s:
        run = RemoteRun(stage="chip", label=label, site="demo", state=state.value,
                        prev_state=prev, path_base="/tmp/x")
        s.add(run)
        s.flush()
        for i in range(components):
            s.add(RemoteComponent(remote_id=run.remote_id, stage_id=run.remote_id * 1000 + i,
                                  stage="chip"))
        return run.remote_id


def _state(engine: Engine, rid: int) -> tuple[str, str | None, int]:
    with read_session(engine) as s:
        run = s.get(RemoteRun, rid)
        assert run is not None
        n = len(s.execute(select(RemoteEvent).where(RemoteEvent.remote_id == rid)).all())
        return run.state, run.prev_state, n


def test_table_is_closed_and_terminals_are_dead_ends() -> None:
    for state, targets in TRANSITIONS.items():
        assert state not in targets, f"{state} may not move to itself"
        if state.terminal:
            assert not targets
    assert set(TRANSITIONS) == set(RunState)


@pytest.mark.parametrize(("src", "dst"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_transition_pair(engine: Engine, src: RunState, dst: RunState) -> None:
    rid = _new_run(engine, src)
    if is_legal(src, dst):
        with write_session(engine) as s:
            transition(s, rid, src, dst, note="t")
        state, prev, events = _state(engine, rid)
        assert state == dst.value
        assert events == 1
        if dst in (RunState.AUTH, RunState.ERROR):
            assert prev == src.value, "auth/error must remember where the run came from"
    else:
        with pytest.raises(IllegalTransition), write_session(engine) as s:
            transition(s, rid, src, dst)
        assert _state(engine, rid) == (src.value, None, 0), "a refused move changes nothing"


def test_stale_expectation_is_a_concurrent_update(engine: Engine) -> None:
    rid = _new_run(engine, RunState.PENDING)
    with pytest.raises(ConcurrentUpdate), write_session(engine) as s:
        transition(s, rid, RunState.NEW, RunState.PENDING)
    assert _state(engine, rid)[0] == "pending"


def test_unknown_run_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFoundError), write_session(engine) as s:
        transition(s, 999, RunState.NEW, RunState.PENDING)


def test_revertauth_returns_each_run_to_its_remembered_state(engine: Engine) -> None:
    a = _new_run(engine, RunState.PENDING, label="A")
    b = _new_run(engine, RunState.RUN, label="A")
    other = _new_run(engine, RunState.RUN, label="B")
    with write_session(engine) as s:
        for rid, st in ((a, RunState.PENDING), (b, RunState.RUN), (other, RunState.RUN)):
            transition(s, rid, st, RunState.AUTH)
    with write_session(engine) as s:
        moved = revertauth(s, label="A")
    assert moved == [(a, RunState.PENDING), (b, RunState.RUN)]
    assert _state(engine, a)[:2] == ("pending", None)
    assert _state(engine, b)[:2] == ("run", None)
    assert _state(engine, other)[0] == "auth", "other labels are left alone"


def test_revert_error_resets_fault_and_returns_to_failed_state(engine: Engine) -> None:
    rid = _new_run(engine, RunState.PENDING)
    with write_session(engine) as s:
        transition(s, rid, RunState.PENDING, RunState.ERROR, fault=4)
    with write_session(engine) as s:
        assert revert(s, rid) is RunState.PENDING
    with read_session(engine) as s:
        run = s.get(RemoteRun, rid)
        assert run is not None and (run.state, run.fault) == ("pending", 0)


def test_revert_refuses_a_run_not_in_error(engine: Engine) -> None:
    rid = _new_run(engine, RunState.FULL)
    with pytest.raises(IllegalTransition), write_session(engine) as s:
        revert(s, rid)


def test_cancel_frees_components_and_refuses_running_runs(engine: Engine) -> None:
    rid = _new_run(engine, RunState.PENDING, components=3)
    with write_session(engine) as s:
        assert cancel(s, rid) is RunState.PENDING
    with read_session(engine) as s:
        assert s.execute(select(RemoteComponent)).all() == []
        run = s.get(RemoteRun, rid)
        assert run is not None and run.state == "cancelled"
    running = _new_run(engine, RunState.RUN)
    with pytest.raises(IllegalTransition), write_session(engine) as s:
        cancel(s, running)


def test_every_non_terminal_state_may_move_to_cancelled() -> None:
    for state in RunState:
        assert is_legal(state, RunState.CANCELLED) is (not state.terminal), state


@pytest.mark.parametrize("state", [RunState.AUTH, RunState.ERROR])
def test_cancel_in_the_database_takes_runs_in_auth_and_error(engine: Engine,
                                                             state: RunState) -> None:
    rid = _new_run(engine, state, components=2)
    with write_session(engine) as s:
        assert cancel(s, rid) is state
    assert _state(engine, rid)[0] == "cancelled"


def test_claim_takes_each_run_once_and_respects_leases(engine: Engine) -> None:
    ids = [_new_run(engine) for _ in range(3)]
    with write_session(engine) as s:
        first = claim(s, RunState.NEW, limit=2)
    with write_session(engine) as s:
        second = claim(s, RunState.NEW, limit=5)
    assert first == ids[:2] and second == ids[2:]
    with write_session(engine) as s:  # an expired lease is free again
        s.execute(update(RemoteRun).values(lease_until=RemoteRun.created))
    with write_session(engine) as s:
        assert claim(s, RunState.NEW, limit=5) == ids


def test_cancel_is_refused_while_another_process_holds_the_lease(engine: Engine) -> None:
    rid = _new_run(engine, RunState.PENDING, components=2)
    with write_session(engine) as s:
        assert claim(s, RunState.PENDING) == [rid]  # exec is pushing it
    with pytest.raises(ConcurrentUpdate), write_session(engine) as s:
        cancel(s, rid)
    assert _state(engine, rid)[0] == "pending", "a job may be on its way: nothing cancelled"
    with write_session(engine) as s:
        release(s, rid)
    with write_session(engine) as s:
        cancel(s, rid)
    assert _state(engine, rid)[0] == "cancelled"


def test_an_expired_lease_cannot_move_a_run_someone_else_took(engine: Engine) -> None:
    rid = _new_run(engine, RunState.RUN)
    with write_session(engine) as s:
        assert claim(s, RunState.RUN) == [rid]
    renew(engine, rid, RunState.RUN)
    with write_session(engine) as s:  # our lease is now someone else's
        s.execute(update(RemoteRun).values(owner="otherhost:1"))
    with pytest.raises(ConcurrentUpdate):
        renew(engine, rid, RunState.RUN)
    with pytest.raises(ConcurrentUpdate), write_session(engine) as s:
        transition(s, rid, RunState.RUN, RunState.FULL, where=[held_by_me()])
    assert _state(engine, rid)[0] == "run"


def test_a_late_poll_cannot_finish_a_resubmitted_job(engine: Engine) -> None:
    rid = _new_run(engine, RunState.RUN)
    with write_session(engine) as s:
        s.execute(update(RemoteRun).values(job_id="2"))  # attempt 2 was submitted
    with pytest.raises(ConcurrentUpdate), write_session(engine) as s:
        transition(s, rid, RunState.RUN, RunState.FULL, where=[RemoteRun.job_id == "1"])
    assert _state(engine, rid)[0] == "run"


def test_revert_to_new_rebuilds_the_job_folder(engine: Engine) -> None:
    rid = _new_run(engine, RunState.PENDING)
    with write_session(engine) as s:
        transition(s, rid, RunState.PENDING, RunState.ERROR, fault=23)
    with write_session(engine) as s:
        assert revert(s, rid, RunState.NEW) is RunState.NEW
    assert _state(engine, rid)[0] == "new"


def _history(engine: Engine, rid: int) -> list[tuple[str | None, str, str]]:
    with read_session(engine) as s:
        rows = s.execute(select(RemoteEvent.from_state, RemoteEvent.to_state, RemoteEvent.note)
                         .where(RemoteEvent.remote_id == rid)
                         .order_by(RemoteEvent.event_id)).all()
        return [(a, b, c) for a, b, c in rows]


def _note(engine: Engine, rid: int) -> str:
    with read_session(engine) as s:
        run = s.get(RemoteRun, rid)
        assert run is not None
        return run.note


def test_a_transition_sets_its_note_on_the_run(engine: Engine) -> None:
    rid = _new_run(engine, RunState.PENDING)
    with write_session(engine) as s:
        assert claim(s, RunState.PENDING) == [rid]
        transition(s, rid, RunState.PENDING, RunState.ERROR, note="exec: folder gone",
                   where=[held_by_me()], fault=23)
    assert _note(engine, rid) == "exec: folder gone"
    assert _history(engine, rid) == [("pending", "error", "exec: folder gone")]


def test_a_long_note_is_cut_once_to_note_max(engine: Engine) -> None:
    rid = _new_run(engine, RunState.RUN)
    with write_session(engine) as s:
        transition(s, rid, RunState.RUN, RunState.AUTH, note="x" * (NOTE_MAX + 500))
    assert _note(engine, rid) == "x" * NOTE_MAX
    assert [len(n) for _, _, n in _history(engine, rid)] == [NOTE_MAX]


def test_a_lost_guard_writes_no_note(engine: Engine) -> None:
    rid = _new_run(engine, RunState.PENDING)
    with write_session(engine) as s:  # another process holds the lease
        s.execute(update(RemoteRun).values(owner="otherhost:1", note="theirs"))
    with pytest.raises(ConcurrentUpdate), write_session(engine) as s:
        transition(s, rid, RunState.PENDING, RunState.AUTH, note="link down: mine",
                   where=[held_by_me()])
    with write_session(engine) as s:
        assert not release(s, rid, note="exec (retry): mine", state=RunState.PENDING)
    assert _note(engine, rid) == "theirs" and _history(engine, rid) == []


def test_release_with_a_note_records_it_while_the_lease_is_ours(engine: Engine) -> None:
    rid = _new_run(engine, RunState.PENDING)
    with write_session(engine) as s:
        assert claim(s, RunState.PENDING) == [rid]
        assert release(s, rid, note="exec (failed): refused", state=RunState.PENDING)
    assert _state(engine, rid)[0] == "pending"
    assert _note(engine, rid) == "exec (failed): refused"
    assert _history(engine, rid) == [("pending", "pending", "exec (failed): refused")]
    with write_session(engine) as s:
        assert claim(s, RunState.PENDING) == [rid], "the lease was given back"


def test_release_sets_values_under_an_extra_guard(engine: Engine) -> None:
    rid = _new_run(engine, RunState.RUN)
    with write_session(engine) as s:
        s.execute(update(RemoteRun).values(job_id="7"))
        assert claim(s, RunState.RUN) == [rid]
        assert not release(s, rid, where=[RemoteRun.job_id == "6"], attempt=5)
        assert release(s, rid, where=[RemoteRun.job_id == "7"], attempt=5)
    with read_session(engine) as s:
        run = s.get(RemoteRun, rid)
        assert run is not None and (run.attempt, run.owner) == (5, None)


def test_renew_refuses_a_run_that_left_the_state(engine: Engine) -> None:
    rid = _new_run(engine, RunState.PENDING)
    with write_session(engine) as s:
        assert claim(s, RunState.PENDING) == [rid]
    renew(engine, rid, RunState.PENDING)
    with pytest.raises(ConcurrentUpdate):
        renew(engine, rid, RunState.RUN)


def test_candidates_of_a_state_label_or_id(engine: Engine) -> None:
    a = _new_run(engine, RunState.PENDING, label="A")
    b = _new_run(engine, RunState.PENDING, label="B")
    c = _new_run(engine, RunState.RUN, label="A")
    with read_session(engine) as s:
        def ids(state: RunState | None, remote_id: int | None = None,
                label: str | None = None) -> list[int]:
            return [x.remote_id for x in candidates(s, state, remote_id=remote_id, label=label)]
        assert ids(RunState.PENDING) == [a, b]
        assert ids(RunState.PENDING, label="A") == [a]
        assert ids(RunState.PENDING, remote_id=c) == [], "a known run in another state"
        assert ids(None, remote_id=c) == [c]
        assert candidates(s, RunState.RUN)[0].site == "demo"
        with pytest.raises(NotFoundError):
            candidates(s, RunState.PENDING, remote_id=c + 1000)


def test_a_configured_lease_length_is_what_claim_and_renew_take(engine: Engine) -> None:
    from datetime import timedelta

    from remotebridge.db.base import utcnow
    from remotebridge.db.statemachine import DEFAULT_LEASE, lease_length, set_lease

    rid = _new_run(engine, RunState.PENDING)
    try:
        set_lease(timedelta(seconds=20))
        assert lease_length() == timedelta(seconds=20)
        with write_session(engine) as s:
            assert claim(s, RunState.PENDING, remote_ids=[rid]) == [rid]
        with read_session(engine) as s:
            until = s.execute(select(RemoteRun.lease_until)
                              .where(RemoteRun.remote_id == rid)).scalar_one()
        assert until is not None
        assert timedelta(seconds=15) < until - utcnow() <= timedelta(seconds=20)
        with pytest.raises(ValueError):
            set_lease(timedelta(0))
    finally:
        set_lease(DEFAULT_LEASE)
