"""The ``/uws/`` endpoints: job list, one job, its phase (read-only UWS 1.1)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from remotebridge import runs, runview
from remotebridge.errors import NotFoundError
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
    detail, products, note = _job_data(request)
    rid = detail.run.remote_id
    created = runview.created_times(request.app.state.engine, [rid]).get(rid)
    return Response(uws.job_document(detail, created, products, note), media_type=XML)


def _job_data(request: Request) -> tuple[runs.RunDetail, list[runview.ProductRef], str]:
    engine = request.app.state.engine
    rid = int(request.path_params["remote_id"])
    detail = runs.show_run(engine, rid)
    products = runview.read_products(runview.job_folder(detail.run.path_base, rid))
    return detail, products, runview.run_note(engine, rid)


def job_results(request: Request) -> Response:
    """``/uws/jobs/{id}/results``: the products (permanent ones of outputs.manifest)."""
    _, products, _ = _job_data(request)
    return Response(uws.results_document(products), media_type=XML)


def job_error(request: Request) -> Response:
    """``/uws/jobs/{id}/error``: the fault and last note of a run in error (404 else)."""
    detail, _, note = _job_data(request)
    text = uws.error_text(detail, note)
    if text is None:
        raise NotFoundError(f"remote run {detail.run.remote_id} is not in error")
    return PlainTextResponse(text + "\n")


def job_phase(request: Request) -> Response:
    """``/uws/jobs/{id}/phase``: the phase alone, as text."""
    detail = runs.show_run(request.app.state.engine, int(request.path_params["remote_id"]))
    return PlainTextResponse(uws.phase(detail.run.state))
