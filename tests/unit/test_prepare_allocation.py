"""Allocation arithmetic: the seed's worked example and the generalisations."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remotebridge.errors import PrepareError
from remotebridge.prepare.allocation import AllocationInput, compute, hms


def inp(**kw: object) -> AllocationInput:
    base: dict[str, Any] = dict(n_commands=37200, threads=2, cost_seconds=150.0,
                                cores_per_node=24, fill_factor=0.8, max_nodes=1000,
                                walltime_min=600, walltime_max=43200)
    base.update(kw)
    return AllocationInput(**base)


def test_seed_worked_example() -> None:
    a = compute(inp())
    assert a.walltime_seconds == 3600
    assert a.walltime == "01:00:00"
    assert a.nodes == 162
    assert a.tasks_per_node == 12
    assert a.slots == 162 * 12
    assert any("= 162" in s for s in a.steps)


def test_small_run_never_asks_more_nodes_than_tasks() -> None:
    a = compute(inp(n_commands=3))
    assert a.nodes == 1
    a = compute(inp(n_commands=100, threads=24, cost_seconds=30000))
    assert a.nodes <= 100


def test_longer_than_one_hour() -> None:
    a = compute(inp(max_nodes=100))
    # 3100 nodes * 150 s = 129.2 node-hours; / (0.8 * 100) = 1.6 -> 2 hours
    assert a.walltime_seconds == 7200
    assert a.nodes == int(129.16666 / (0.8 * 2)) + 1


def test_does_not_fit() -> None:
    with pytest.raises(PrepareError, match="allocation does not fit"):
        compute(inp(max_nodes=2))


def test_one_command_longer_than_walltime_unit() -> None:
    a = compute(inp(n_commands=1, cost_seconds=5 * 3600))
    assert a.walltime_seconds >= 5 * 3600 / 0.8
    with pytest.raises(PrepareError, match="does not fit"):
        compute(inp(n_commands=1, cost_seconds=40000))


def test_bad_threads() -> None:
    with pytest.raises(PrepareError):
        compute(inp(threads=48))
    with pytest.raises(PrepareError):
        compute(inp(n_commands=0))


def test_hms() -> None:
    assert hms(3661) == "01:01:01"
    assert hms(100 * 3600) == "100:00:00"


@given(n=st.integers(1, 200000), threads=st.integers(1, 24), cost=st.floats(1, 3000),
       max_nodes=st.integers(1, 2000))
def test_properties(n: int, threads: int, cost: float, max_nodes: int) -> None:
    try:
        a = compute(inp(n_commands=n, threads=threads, cost_seconds=cost, max_nodes=max_nodes,
                        walltime_max=10**9))
    except PrepareError:
        return
    assert 1 <= a.nodes <= max_nodes
    assert a.walltime_seconds % 3600 == 0
    assert a.walltime_seconds >= 600
    node_hours = n * threads / 24 * cost / 3600
    capacity = a.nodes * a.walltime_seconds / 3600 * 0.8
    if a.nodes < max_nodes:
        # not held back by max_nodes: the allocation covers the node-hours at the planned fill
        assert capacity >= node_hours * (1 - 1e-9), (a.nodes, a.walltime, node_hours)
