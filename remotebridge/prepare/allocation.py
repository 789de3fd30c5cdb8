"""How many whole nodes, for how long: the seed's allocation formula, generalised.

The seed (shared/seeds/002, "Allocation calculation") computes, for N commands of
``threads`` threads costing ``cost`` hours each on ``cores``-core nodes::

    node_need      = N * threads / cores
    time_requested = int(node_need * cost / (fill * max_nodes)) + 1     # hours
    node_requested = int(node_need * cost / (fill * time_requested)) + 1

Generalised here: the time unit is ``granularity`` seconds (3600 = the seed's
hours); the walltime is at least ``walltime_min`` and a single command must fit in
``fill`` of it; a walltime above ``walltime_max`` is refused ("allocation does not
fit"); nodes never exceed ``max_nodes`` nor the nodes needed to run every command
at once (a 3-command demo run asks for one node, not 162).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from remotebridge.errors import PrepareError

FAULT_ALLOCATION = 13


@dataclass(frozen=True)
class AllocationInput:
    """Everything the arithmetic uses."""

    n_commands: int
    threads: int
    cost_seconds: float
    cores_per_node: int
    fill_factor: float
    max_nodes: int
    walltime_min: int
    walltime_max: int
    granularity: int = 3600
    cost_source: str = "config"


@dataclass(frozen=True)
class Allocation:
    """The request, and the arithmetic that produced it (for allocation.json and review)."""

    nodes: int
    walltime_seconds: int
    cores_per_node: int
    threads: int
    tasks_per_node: int
    slots: int
    inputs: AllocationInput
    steps: list[str]

    @property
    def walltime(self) -> str:
        """HH:MM:SS, as both Slurm and Moab take it."""
        return hms(self.walltime_seconds)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for allocation.json."""
        data = asdict(self)
        data["walltime"] = self.walltime
        return data


def hms(seconds: int) -> str:
    """Seconds as HH:MM:SS (hours may exceed 24)."""
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def compute(a: AllocationInput) -> Allocation:
    """The allocation for ``a``; PrepareError when it cannot fit the walltime bounds."""
    _check(a)
    unit_h = a.granularity / 3600.0
    cost_h = a.cost_seconds / 3600.0
    node_need = a.n_commands * a.threads / a.cores_per_node
    work = node_need * cost_h
    units = int(work / (a.fill_factor * a.max_nodes * unit_h)) + 1
    single = math.ceil(a.cost_seconds / (a.fill_factor * a.granularity))
    units = max(units, single)
    wall = max(units * a.granularity, a.walltime_min)
    steps = _steps(a, node_need, work, units, wall)
    if wall > a.walltime_max:
        raise PrepareError(
            f"allocation does not fit: needs walltime {hms(wall)} at {a.max_nodes} nodes, "
            f"the site allows at most {hms(a.walltime_max)}",
            fault=FAULT_ALLOCATION, hint="split the run (definebyquery --limit) or raise "
            "max_nodes / walltime_max")
    nodes = int(work / (a.fill_factor * wall / 3600.0)) + 1
    steps.append(f"node_requested = int({work:.6g} / ({a.fill_factor} * {wall / 3600:.6g}))"
                 f" + 1 = {nodes}")
    nodes = _cap_nodes(a, nodes, node_need, steps)
    per_node = max(1, a.cores_per_node // a.threads)
    return Allocation(nodes=nodes, walltime_seconds=wall, cores_per_node=a.cores_per_node,
                      threads=a.threads, tasks_per_node=per_node, slots=nodes * per_node,
                      inputs=a, steps=steps)


def _check(a: AllocationInput) -> None:
    if a.n_commands < 1:
        raise PrepareError("allocation needs at least one command", fault=FAULT_ALLOCATION)
    if a.threads < 1 or a.threads > a.cores_per_node:
        raise PrepareError(f"threads per command ({a.threads}) must be between 1 and the "
                           f"cores per node ({a.cores_per_node})", fault=FAULT_ALLOCATION)
    if a.fill_factor <= 0 or a.max_nodes < 1 or a.granularity < 1:
        raise PrepareError("fill_factor, max_nodes and granularity must be positive",
                           fault=FAULT_ALLOCATION)


def _steps(a: AllocationInput, node_need: float, work: float, units: int,
           wall: int) -> list[str]:
    return [
        f"node_need = N * threads / cores = {a.n_commands} * {a.threads} / "
        f"{a.cores_per_node} = {node_need:.6g}",
        f"cost = {a.cost_seconds:.6g} s = {a.cost_seconds / 3600:.6g} h ({a.cost_source})",
        f"node_hours = node_need * cost = {work:.6g}",
        f"time_units = int(node_hours / ({a.fill_factor} * {a.max_nodes} * "
        f"{a.granularity / 3600:.6g} h)) + 1, and >= one command / fill = {units}",
        f"walltime = max({units} * {a.granularity} s, walltime_min {a.walltime_min} s) = "
        f"{wall} s = {hms(wall)}",
    ]


def _cap_nodes(a: AllocationInput, nodes: int, node_need: float, steps: list[str]) -> int:
    cap = min(a.max_nodes, max(1, math.ceil(node_need)))
    if nodes > cap:
        steps.append(f"nodes capped at min(max_nodes {a.max_nodes}, ceil(node_need) "
                     f"{math.ceil(node_need)}) = {cap}")
        return cap
    return nodes
