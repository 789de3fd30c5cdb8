"""An IVOA UWS 1.1 view of the remote runs (read-only): job list and job documents.

Each remote run is one UWS job (``jobId`` = remote_id). Phases are mapped from
:class:`~remotebridge.states.RunState` by :data:`PHASES` (the table is in docs/web.md).
Results point to the products listed in the run's outputs.manifest; a run in
``error`` carries an errorSummary with its fault and last note. Untrusted text (notes)
goes through :func:`remotebridge.web.text.visible` first: XML 1.0 cannot carry control
characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from xml.etree import ElementTree as ET

from remotebridge.errors import UsageError
from remotebridge.runs import RunDetail, RunRecord
from remotebridge.runview import ProductRef
from remotebridge.states import RunState
from remotebridge.web.text import visible

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
UWS_VERSION = "1.1"
ET.register_namespace("uws", UWS_NS)
ET.register_namespace("xlink", XLINK_NS)
ET.register_namespace("xsi", XSI_NS)

#: our run states as UWS phases
PHASES: dict[RunState, str] = {
    RunState.NEW: "PENDING",
    RunState.PENDING: "QUEUED",
    RunState.RUN: "EXECUTING",
    RunState.FULL: "COMPLETED",
    RunState.ERROR: "ERROR",
    RunState.AUTH: "HELD",
    RunState.CANCELLED: "ABORTED",
}
ALL_PHASES = frozenset({*PHASES.values(), "UNKNOWN", "SUSPENDED", "ARCHIVED"})


@dataclass(frozen=True)
class JobQuery:
    """The job-list filters of UWS 1.1: PHASE (repeatable), AFTER, LAST."""

    phases: frozenset[str] = frozenset()
    after: datetime | None = None
    last: int | None = None


def phase(state: str) -> str:
    """The UWS phase of a run state (UNKNOWN for a state we do not know)."""
    try:
        return PHASES[RunState(state)]
    except ValueError:
        return "UNKNOWN"


def parse_query(phases: Sequence[str], after: str | None, last: str | None) -> JobQuery:
    """The filters from the query string; UsageError on a bad value."""
    bad = [p for p in phases if p not in ALL_PHASES]
    if bad:
        raise UsageError(f"unknown PHASE {bad[0]!r}")
    when = None
    if after:
        try:
            when = datetime.fromisoformat(after.replace("Z", "+00:00"))
        except ValueError as exc:
            raise UsageError(f"AFTER is not an ISO 8601 time: {after!r}") from exc
        if when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
    count = None
    if last is not None:
        if not last.isdigit() or int(last) < 1:
            raise UsageError(f"LAST must be a positive integer: {last!r}")
        count = int(last)
    return JobQuery(frozenset(phases), when, count)


def select_jobs(records: Iterable[RunRecord], created: dict[int, datetime],
                query: JobQuery) -> list[RunRecord]:
    """The runs the query asks for: by phase, created after AFTER; with LAST, the
    LAST most recently created, newest first (UWS 1.1 section 2.2.2.1)."""
    out = [r for r in records
           if (not query.phases or phase(r.state) in query.phases)
           and (query.after is None or created.get(r.remote_id, r.updated) > query.after)]
    if query.last is not None:
        out.sort(key=lambda r: (created.get(r.remote_id, r.updated), r.remote_id), reverse=True)
        out = out[:query.last]
    return out


def job_list(records: Sequence[RunRecord], created: dict[int, datetime], base: str) -> bytes:
    """The ``uws:jobs`` document for ``records``; ``base`` is the URL of /uws/jobs."""
    root = ET.Element(_q("jobs"), {"version": UWS_VERSION})
    for r in records:
        ref = ET.SubElement(root, _q("jobref"), {
            "id": str(r.remote_id), f"{{{XLINK_NS}}}type": "simple",
            f"{{{XLINK_NS}}}href": f"{base}/{r.remote_id}"})
        _text(ref, "phase", phase(r.state))
        _text(ref, "runId", f"{r.label}/{r.stage}")
        _nil(ref, "ownerId")
        _text(ref, "creationTime", _time(created.get(r.remote_id, r.updated)))
    return _serialise(root)


def job_document(detail: RunDetail, created: datetime | None,
                 products: Sequence[ProductRef], note: str) -> bytes:
    """The ``uws:job`` document of one run."""
    r = detail.run
    root = ET.Element(_q("job"), {"version": UWS_VERSION})
    _text(root, "jobId", str(r.remote_id))
    _text(root, "runId", f"{r.label}/{r.stage}")
    _nil(root, "ownerId")
    _text(root, "phase", phase(r.state))
    _text(root, "creationTime", _time(created or r.updated))
    start, end = _span(detail.history)
    _maybe(root, "startTime", start)
    _maybe(root, "endTime", end)
    _text(root, "executionDuration", "0")
    _nil(root, "destruction")
    _parameters(root, r)
    _results(root, products)
    if r.state == RunState.ERROR.value:
        summary = ET.SubElement(root, _q("errorSummary"), {"type": "fatal", "hasDetail": "true"})
        _text(summary, "message", error_text(detail, note) or "")
    return _serialise(root)


def results_document(products: Sequence[ProductRef]) -> bytes:
    """The ``uws:results`` document alone (``/uws/jobs/ID/results``)."""
    root = ET.Element(_q("results"))
    _fill_results(root, products)
    return _serialise(root)


def error_text(detail: RunDetail, note: str) -> str | None:
    """The error of a run in ``error`` (``/uws/jobs/ID/error``); None for other runs."""
    if detail.run.state != RunState.ERROR.value:
        return None
    return visible(f"fault {detail.run.fault}: {note}")


def _parameters(root: ET.Element, r: RunRecord) -> None:
    params = ET.SubElement(root, _q("parameters"))
    values: dict[str, Any] = {"stage": r.stage, "label": r.label, "site": r.site,
                              "job_id": r.job_id or "", "components": r.components,
                              "attempt": r.attempt, "fault": r.fault}
    for key, value in values.items():
        ET.SubElement(params, _q("parameter"), {"id": key}).text = visible(str(value))


def _results(root: ET.Element, products: Sequence[ProductRef]) -> None:
    _fill_results(ET.SubElement(root, _q("results")), products)


def _fill_results(results: ET.Element, products: Sequence[ProductRef]) -> None:
    for i, p in enumerate(products):
        if not p.permanent:
            continue
        name = PurePosixPath(p.local).name
        ET.SubElement(results, _q("result"), {
            "id": visible(f"{p.stage_id}-{i}-{name}"), f"{{{XLINK_NS}}}type": "simple",
            f"{{{XLINK_NS}}}href": visible("file://" + p.local)})


def _span(history: Sequence[dict[str, Any]]) -> tuple[str | None, str | None]:
    """When the run last entered ``run`` and when it then ended (ISO times), from history."""
    start = end = None
    for h in history:
        if h["to"] == RunState.RUN.value:
            start, end = h["at"], None
        elif start and h["to"] in (RunState.FULL.value, RunState.ERROR.value,
                                   RunState.CANCELLED.value):
            end = h["at"]
    return (_time(datetime.fromisoformat(start)) if start else None,
            _time(datetime.fromisoformat(end)) if end else None)


def _time(when: datetime) -> str:
    """UTC ISO 8601 with a Z (the database keeps naive UTC)."""
    return when.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _q(tag: str) -> str:
    return f"{{{UWS_NS}}}{tag}"


def _text(parent: ET.Element, tag: str, value: str) -> ET.Element:
    el = ET.SubElement(parent, _q(tag))
    el.text = value
    return el


def _nil(parent: ET.Element, tag: str) -> None:
    ET.SubElement(parent, _q(tag), {f"{{{XSI_NS}}}nil": "true"})


def _maybe(parent: ET.Element, tag: str, value: str | None) -> None:
    if value is None:
        _nil(parent, tag)
    else:
        _text(parent, tag, value)


def _serialise(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
