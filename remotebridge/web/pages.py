"""The HTML pages: runs, one run, a job folder file, sites.

Each page renders a template whose live part (``_*.html``) is also served alone
with ``?partial=1``: the page's small script fetches it every few seconds and swaps
it in, so a state change shows without a reload. Without JavaScript the page is
complete and the "refresh" link reloads it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from remotebridge import controlcheck, runs, runview
from remotebridge.errors import BridgeError, NotFoundError
from remotebridge.states import RunState, Stage
from remotebridge.web.text import finalize

REFRESH_MS = 4000

ENV = Environment(loader=PackageLoader("remotebridge.web", "templates"), autoescape=True,
                  finalize=finalize, trim_blocks=True, lstrip_blocks=True)


def link_maker(request: Request) -> Any:
    """``link(path, **params)``: a URL on this server, carrying ``?token=`` when the
    request came with one (a browser following links cannot send a header)."""
    token = request.query_params.get("token")

    def link(path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        if token:
            query["token"] = token
        return path + ("?" + urlencode(query) if query else "")

    return link


def render(request: Request, page: str, live: str, status: int = 200, **data: Any) -> Response:
    """``page`` in full, or only its live part ``live`` with ``?partial=1``."""
    data |= {"link": link_maker(request), "refresh_ms": REFRESH_MS,
             "token": request.query_params.get("token")}
    name = live if request.query_params.get("partial") == "1" else page
    return HTMLResponse(ENV.get_template(name).render(**data), status_code=status)


def error_page(request: Request, status: int, message: str) -> Response:
    """A plain page for 400/404 (the message escaped like everything else)."""
    return HTMLResponse(ENV.get_template("error.html").render(
        link=link_maker(request), status=status, message=message), status_code=status)


def _choice(request: Request, key: str, allowed: list[str]) -> str | None:
    value = request.query_params.get(key) or None
    if value is not None and value not in allowed:
        raise NotFoundError(f"no {key} named {value!r}")
    return value


def runs_page(request: Request) -> Response:
    """The runs, filtered by label, stage and state, with counts per state."""
    engine = request.app.state.engine
    label = request.query_params.get("label") or None
    stage = _choice(request, "stage", [s.value for s in Stage])
    state = _choice(request, "state", [s.value for s in RunState])
    records = runs.list_runs(engine, label=label, stage=stage, state=state)
    counts = runview.state_counts(engine, label=label, stage=stage)
    return render(request, "runs.html", "_runs.html", records=records, counts=counts,
                  states=[s.value for s in RunState], stages=[s.value for s in Stage],
                  label=label or "", stage=stage or "", state=state or "",
                  total=sum(counts.values()))


def run_page(request: Request) -> Response:
    """One run: fields, allocation, transfers, components, failed tasks' logs, files,
    history."""
    engine = request.app.state.engine
    rid = int(request.path_params["remote_id"])
    detail = runs.show_run(engine, rid)
    folder = runview.job_folder(detail.run.path_base, rid)
    failed = [c for c in detail.components if c["state"] in ("failed", "abandoned")]
    return render(request, "run.html", "_run.html", run=detail.run, detail=detail,
                  note=runview.run_note(engine, rid), folder=str(folder),
                  allocation=runview.read_allocation(folder),
                  transfers=runview.transfer_lines(detail.history), failed=failed,
                  logs=runview.read_logs(folder), files=runview.present_files(folder))


def run_file(request: Request) -> Response:
    """One file of the run's job folder, as plain text (names checked; 404 otherwise)."""
    engine = request.app.state.engine
    rid = int(request.path_params["remote_id"])
    detail = runs.show_run(engine, rid)
    path = runview.open_file(runview.job_folder(detail.run.path_base, rid),
                             request.path_params["name"])
    return FileResponse(path, media_type="text/plain; charset=utf-8",
                        headers={"content-disposition": "inline"})


def sites_page(request: Request) -> Response:
    """The configured sites: kind, scheduler, front ends and their masters, and what
    ``control-tool check`` says of them (time left before the cut, pause, runs in auth)."""
    config = request.app.state.config
    sites = []
    for site in config.sites.values():
        default = site.name == config.default_site
        try:
            checked = controlcheck.check(site, request.app.state.engine, is_default=default)
            entry: dict[str, Any] = {"masters": [m.to_dict() for m in checked.masters],
                                     "problem": "", "check": checked.to_dict()}
        except BridgeError as exc:
            entry = {"masters": [], "problem": exc.message, "check": None}
        sites.append({"site": site, "default": default, **entry})
    return render(request, "sites.html", "_sites.html", sites=sites)
