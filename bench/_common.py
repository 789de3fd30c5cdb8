"""Shared harness of the benchmarks: figures, the table, ``--json``.

Every benchmark measures *ours* and a *baseline* in the same run and reports each as a
:class:`Figure`. Without ``--json`` the figures are printed as a table; with ``--json``
each figure is printed as one JSON object per line with the keys ``name``, ``ours``,
``baseline``, ``ratio``, ``target``, ``met`` (plus ``unit``, ``baseline_is`` and
``note``). A missed target is reported (``met: false``), never turned into a failing
exit status: a benchmark exits 0 when it ran.

Run every benchmark with the project's virtualenv Python from the clone's root, e.g.
``.venv/bin/python bench/bench_poll.py --json``; :func:`setup_path` puts the clone
first on ``sys.path`` so that the clone's code is measured.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def setup_path() -> None:
    """Measure this clone's code (and let benches use tests/support)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


@dataclass
class Figure:
    """One measured figure: ours against a baseline from the same run.

    ``ratio`` is ``baseline / ours`` for ``higher_is_better=False`` figures (times,
    bytes: >1 means ours is better) and ``ours / baseline`` otherwise (rates).
    ``met`` is decided by ``check`` (given ours and the ratio).
    """

    name: str
    ours: float
    baseline: float | None
    unit: str
    target: str
    met: bool
    ratio: float | None = None
    baseline_is: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def figure(name: str, ours: float, baseline: float | None, *, unit: str, target: str,
           check: Callable[[float, float | None], bool], baseline_is: str = "",
           higher_is_better: bool = False, note: str = "", **extra: Any) -> Figure:
    """Build a :class:`Figure`, computing the ratio and whether the target is met."""
    ratio = None
    if baseline is not None and ours > 0 and baseline > 0:
        ratio = ours / baseline if higher_is_better else baseline / ours
    return Figure(name=name, ours=ours, baseline=baseline, unit=unit, target=target,
                  met=bool(check(ours, ratio)), ratio=ratio, baseline_is=baseline_is,
                  note=note, extra=extra)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the common ``--json`` option."""
    ap = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    ap.add_argument("--json", action="store_true",
                    help="one JSON object per figure (ours, baseline, ratio, target, met)")
    return ap


class Report:
    """Collects figures and prints them (table or JSON lines) as they come."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.figures: list[Figure] = []
        self._header = False

    def add(self, fig: Figure) -> Figure:
        """Record and print one figure."""
        self.figures.append(fig)
        if self.as_json:
            print(json.dumps(_jsonable(fig)), flush=True)
            return fig
        if not self._header:
            print(f"{'figure':<44} {'ours':>10} {'baseline':>10} {'unit':<6} {'ratio':>7}  "
                  f"{'target':<30} met", flush=True)
            self._header = True
        base = "-" if fig.baseline is None else _num(fig.baseline)
        ratio = "-" if fig.ratio is None else f"{fig.ratio:.2f}x"
        print(f"{fig.name:<44} {_num(fig.ours):>10} {base:>10} {fig.unit:<6} {ratio:>7}  "
              f"{fig.target:<30} {'yes' if fig.met else 'NO'}", flush=True)
        return fig

    def note(self, text: str) -> None:
        """A comment line (table mode only; JSON output stays one object per line)."""
        if not self.as_json:
            print(f"# {text}", flush=True)


def _num(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return str(v)
    return f"{v:.3f}" if abs(v) < 100 else f"{v:,.0f}"


def _jsonable(fig: Figure) -> dict[str, Any]:
    d = asdict(fig)
    extra = d.pop("extra")
    d.update(extra)
    return d


@contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    out: list[float] = []
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - t0)


def backend_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by a local process, e.g. the PostgreSQL
    backend of a connection (``SELECT pg_backend_pid()``); 0.0 when it cannot be read.

    On a shared, loaded machine wall-clock time mostly measures the other users; the
    CPU seconds of our process plus its database backend are what the code costs.
    """
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_note() -> str:
    """The machine's load average and core count, printed with every run."""
    import os

    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} cores"


def best_of(n: int, fn: Callable[[], float]) -> float:
    """The smallest of ``n`` measurements (the machine is shared: less noise)."""
    return min(fn() for _ in range(n))
