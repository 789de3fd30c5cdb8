"""The dynamic runner's dispatch policy (rbdispatch), driven in virtual time."""

from __future__ import annotations

from typing import Any

from remotebridge.remote import rbdispatch as rd


def task(tid: int, cost: float, threads: int = 1, phase: str = "cmd", stage: int = 1) -> rd.Task:
    return rd.Task(tid, stage, phase, threads, cost)


def run_all(disp: rd.Dispatcher, nodes: dict[str, int], outcome: Any = None,
            ) -> list[tuple[float, float, int, str]]:
    """Simulate; (start, end, task_id, node) of every attempt, in start order."""
    log: list[tuple[float, float, int, str]] = []

    def run(a: rd.Assignment, now: float) -> tuple[int, float]:
        rc, elapsed = outcome(a, now) if outcome else (0, disp.tasks[a.task_id].cost)
        log.append((now, now + min(elapsed, a.timeout), a.task_id, a.node))
        return rc, elapsed

    rd.simulate(disp, nodes, run)
    return sorted(log)


def test_longest_expected_first() -> None:
    disp = rd.Dispatcher([task(1, 1.0), task(2, 5.0), task(3, 3.0)], end=1000, margin=0)
    order = [tid for _s, _e, tid, _n in run_all(disp, {"n": 1})]
    assert order == [2, 3, 1]


def test_threads_packed_into_the_node_cores() -> None:
    tasks = [task(1, 10, threads=3), task(2, 9, threads=2), task(3, 1, threads=1)]
    disp = rd.Dispatcher(tasks, end=1000, margin=0)
    disp.add_node("n", 4)
    first = disp.assign("n", 0.0)
    assert [a.task_id for a in first] == [1, 3]  # the 2-thread task does not fit beside 3
    assert sum(a.threads for a in first) <= 4
    disp.finish(first[0].seq, 0, 10.0)
    assert [a.task_id for a in disp.assign("n", 10.0)] == [2]


def test_no_more_threads_than_cores_at_any_time() -> None:
    tasks = [task(i, 1 + i % 7, threads=1 + i % 3) for i in range(60)]
    disp = rd.Dispatcher(tasks, end=10_000, margin=0)
    log = run_all(disp, {"a": 4, "b": 3})
    for t in sorted({s for s, *_ in log}):
        for node, cores in (("a", 4), ("b", 3)):
            busy = sum(disp.tasks[tid].threads for s, e, tid, n in log
                       if n == node and s <= t < e)
            assert busy <= cores
    assert disp.counts()["done"] == 60


def test_post_starts_after_its_own_cmd_tasks_not_after_all() -> None:
    tasks = [task(0, 1, phase="pre", stage=0),
             task(1, 2, stage=1), task(2, 3, stage=1), task(3, 1, phase="post", stage=1),
             task(4, 50, stage=2), task(5, 1, phase="post", stage=2)]
    disp = rd.Dispatcher(tasks, end=1000, margin=0)
    times = {tid: (s, e) for s, e, tid, _n in run_all(disp, {"n": 4})}
    assert all(times[t][0] >= times[0][1] for t in (1, 2, 3, 4, 5))  # mkdirs first
    assert times[3][0] >= max(times[1][1], times[2][1])
    assert times[3][0] < times[4][1]  # no barrier: component 1's post before 2's cmd ends
    assert times[5][0] >= times[4][1]


def test_component_pre_task_gates_only_its_component() -> None:
    tasks = [task(1, 5, phase="pre", stage=1), task(2, 1, stage=1), task(3, 1, stage=2)]
    disp = rd.Dispatcher(tasks, end=1000, margin=0)
    times = {tid: (s, e) for s, e, tid, _n in run_all(disp, {"n": 2})}
    assert times[2][0] >= times[1][1]
    assert times[3][0] == 0.0


def test_walltime_guard_reports_not_started_without_spending_an_attempt() -> None:
    disp = rd.Dispatcher([task(i, 30.0) for i in range(5)], end=100.0, margin=10.0)
    log = run_all(disp, {"n": 1})
    assert max(e for _s, e, _t, _n in log) <= 90.0  # nothing runs into the margin
    assert disp.counts() == {"done": 3, "failed": 0, "running": 0, "left": 0, "not_started": 2}
    late = [t for t, st in disp.state.items() if st == rd.NOT_STARTED]
    assert all(disp.reason[t] == rd.WALLTIME and disp.attempts[t] == 0 for t in late)


def test_guard_scales_the_expected_cost_by_what_the_job_measured() -> None:
    disp = rd.Dispatcher([task(i, 10.0) for i in range(8)], end=90.0, margin=0.0)
    log = run_all(disp, {"n": 1}, outcome=lambda a, now: (0, 20.0))  # every task takes 2x
    assert disp.scale("cmd") == 2.0
    # 3 run before the scale is known (0-60); at 60 one more fits (60-80); at 80 the plan's
    # 10 s would still fit before 90, the measured 20 s does not
    assert disp.counts()["done"] == 4
    assert max(e for _s, e, _t, _n in log) <= 90.0


def test_post_of_a_component_with_unstarted_cmd_is_not_started() -> None:
    tasks = [task(1, 60, stage=1), task(2, 60, stage=1), task(3, 1, phase="post", stage=1)]
    disp = rd.Dispatcher(tasks, end=100, margin=0)
    run_all(disp, {"n": 1})
    assert disp.state[2] == rd.NOT_STARTED and disp.state[3] == rd.NOT_STARTED


def test_failed_attempt_is_retried_in_the_job() -> None:
    calls: dict[int, int] = {}

    def flaky(a: rd.Assignment, now: float) -> tuple[int, float]:
        calls[a.task_id] = calls.get(a.task_id, 0) + 1
        return (1 if calls[a.task_id] == 1 else 0), 1.0

    disp = rd.Dispatcher([task(1, 1.0)], end=100, margin=0, max_attempts=3)
    run_all(disp, {"n": 1}, outcome=flaky)
    assert disp.state[1] == rd.DONE and disp.attempts[1] == 2


def test_retries_stop_at_max_attempts() -> None:
    disp = rd.Dispatcher([task(1, 1.0)], end=100, margin=0, max_attempts=3)
    log = run_all(disp, {"n": 1}, outcome=lambda a, now: (2, 1.0))
    assert len(log) == 3 and disp.state[1] == rd.FAILED


def test_hung_task_ends_at_its_timeout_and_is_retried() -> None:
    disp = rd.Dispatcher([task(1, 2.0)], end=1000, margin=0, max_attempts=2,
                         timeout_factor=3.0, timeout_min=0.0)
    log = run_all(disp, {"n": 1}, outcome=lambda a, now: (0, 10_000.0))
    assert [round(e - s, 6) for s, e, _t, _n in log] == [6.0, 6.0]
    assert disp.state[1] == rd.FAILED


def test_lost_node_tasks_go_back_without_spending_an_attempt() -> None:
    disp = rd.Dispatcher([task(1, 5.0), task(2, 5.0)], end=1000, margin=0)
    disp.add_node("a", 1)
    disp.add_node("b", 1)
    a, b = disp.assign("a", 0.0)[0], disp.assign("b", 0.0)[0]
    assert disp.lose_node("a") == [a.task_id]
    assert disp.attempts[a.task_id] == 0 and disp.finish(a.seq, 0, 1.0) is None  # late: ignored
    disp.finish(b.seq, 0, 5.0)
    again = disp.assign("b", 5.0)
    assert [x.task_id for x in again] == [a.task_id] and again[0].attempt == 1


def test_task_that_takes_down_every_node_is_failed_lost() -> None:
    disp = rd.Dispatcher([task(1, 5.0)], end=1000, margin=0, max_lost=1)
    for n in ("a", "b"):
        disp.add_node(n, 1)
        assert disp.assign(n, 0.0)
        disp.lose_node(n)
    assert disp.state[1] == rd.FAILED and disp.reason[1] == rd.LOST


def test_attempt_stopped_at_the_hard_stop_is_not_started() -> None:
    disp = rd.Dispatcher([task(1, 10.0)], end=100, margin=20)
    run_all(disp, {"n": 1}, outcome=lambda a, now: (0, 500.0 if now == 0 else 1.0))
    assert disp.hard_stop() == 90.0
    assert disp.state[1] == rd.NOT_STARTED and disp.attempts[1] == 0


def test_tasks_wider_than_every_node_are_closed_not_started() -> None:
    disp = rd.Dispatcher([task(1, 1.0, threads=8), task(2, 1.0)], end=100, margin=0)
    run_all(disp, {"n": 4})
    assert disp.state[2] == rd.DONE
    assert disp.state[1] == rd.NOT_STARTED and disp.reason[1] == rd.NO_NODE
    assert disp.finished()


def test_close_counts_each_post_task_once() -> None:
    """close() with a component's cmd tasks still queued and its post task blocked on them:
    the cmd task's end must not make the post ready and final a second time (counted
    twice, ``finished()`` never came true and the leader dispatched for ever)."""
    tasks = [task(1, 1.0, phase="pre", stage=0), task(2, 1.0, threads=8, stage=1),
             task(3, 1.0, phase="post", stage=1), task(4, 1.0, stage=2),
             task(5, 1.0, phase="post", stage=2)]
    disp = rd.Dispatcher(tasks, end=100, margin=0)
    run_all(disp, {"n": 4})  # task 2 fits no node: closed with its post
    assert disp.finished() and disp.n_final == len(tasks)
    assert [disp.state[t] for t in (2, 3)] == [rd.NOT_STARTED] * 2
    assert disp.reason[2] == disp.reason[3] == rd.NO_NODE
    assert [disp.state[t] for t in (1, 4, 5)] == [rd.DONE] * 3
    assert not disp.has_ready()


def test_close_before_any_node_leaves_nothing_queued() -> None:
    tasks = [task(1, 1.0, phase="pre", stage=0), task(2, 1.0, phase="pre", stage=1),
             task(3, 1.0, stage=1), task(4, 1.0, phase="post", stage=1)]
    disp = rd.Dispatcher(tasks, end=100, margin=0)
    disp.close()
    assert disp.finished() and disp.n_final == 4 and not disp.has_ready()
    assert {disp.reason[t] for t in range(1, 5)} == {rd.NO_NODE}
