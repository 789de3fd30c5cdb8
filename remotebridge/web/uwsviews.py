"""The ``/uws/`` endpoints: job list, one job, its phase (read-only UWS 1.1)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from remotebridge import runs, runview
from remotebridge.web import uws

XML = "text/xml; charset=utf-8"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/uws/jobs"


def jobs(request: Request) -> Response:
    """``/uws/jobs[?PHASE=...&AFTER=...&LAST=n]``: the job list."""
    params = request.query_params
    query = uws.parse_query(params.getlist("PHASE"), params.get("AFTER"), params.get("LAST"))
    engine = request.app.state.engine
    created = runview.created_times(engine)
    chosen = uws.select_jobs(runs.list_runs(engine), created, query)
    return Response(uws.job_list(chosen, created, _base(request)), media_type=XML)


def job(request: Request) -> Response:
    """``/uws/jobs/{id}``: one job document."""
    engine = request.app.state.engine
    rid = int(request.path_params["remote_id"])
    detail = runs.show_run(engine, rid)
    folder = runview.job_folder(detail.run.path_base, rid)
    created = runview.created_times(engine, [rid]).get(rid)
    body = uws.job_document(detail, created, runview.read_products(folder),
                            runview.run_note(engine, rid))
    return Response(body, media_type=XML)


def job_phase(request: Request) -> Response:
    """``/uws/jobs/{id}/phase``: the phase alone, as text."""
    detail = runs.show_run(request.app.state.engine, int(request.path_params["remote_id"]))
    return PlainTextResponse(uws.phase(detail.run.state))
