"""The Starlette application: routes, the token gate, GET only, safety headers.

:func:`create_app` takes an engine and the configuration (the same objects the
command line builds) and an optional token. With a token every request must carry
it, as ``Authorization: Bearer T`` or ``?token=T`` (compared in constant time);
links on the pages carry a ``?token=`` given that way so that a browser can follow
them.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from remotebridge.config import Config
from remotebridge.errors import BridgeError, NotFoundError, UsageError
from remotebridge.web import pages, uwsviews

STATIC = Path(__file__).with_name("static")
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def given_token(request: Request) -> str:
    """The token a request carries (Bearer header first, else ?token=); '' if none."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token", "")


class Guard:
    """ASGI middleware: GET/HEAD only, the token when one is set, safety headers."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)

    def _refusal(self, request: Request) -> Response | None:
        if request.method not in ("GET", "HEAD"):
            return PlainTextResponse("method not allowed: this page is read-only\n", 405,
                                     headers={"allow": "GET, HEAD", **SECURITY_HEADERS})
        if self.token is None:
            return None
        if hmac.compare_digest(given_token(request).encode(), self.token):
            return None
        return PlainTextResponse("unauthorized: a token is required\n", 401,
                                 headers={"www-authenticate": "Bearer", **SECURITY_HEADERS})


def _not_found(request: Request, exc: Exception) -> Response:
    return pages.error_page(request, 404, str(getattr(exc, "message", "")) or "not found")


def _bad_request(request: Request, exc: Exception) -> Response:
    return pages.error_page(request, 400, str(getattr(exc, "message", exc)))


def _unavailable(request: Request, exc: Exception) -> Response:
    """Any other error of ours (database down or locked...): 503, said on the page; the
    live script shows "not updating" and keeps trying."""
    return pages.error_page(request, 503, str(getattr(exc, "message", exc)))


def create_app(engine: Engine, config: Config, *, token: str | None = None) -> Starlette:
    """The status page application over ``engine`` and ``config``."""
    routes = [
        Route("/", pages.runs_page, methods=["GET"]),
        Route("/runs", pages.runs_page, methods=["GET"]),
        Route("/runs/{remote_id:int}", pages.run_page, methods=["GET"]),
        Route("/runs/{remote_id:int}/files/{name:path}", pages.run_file, methods=["GET"]),
        Route("/sites", pages.sites_page, methods=["GET"]),
        Route("/uws/jobs", uwsviews.jobs, methods=["GET"]),
        Route("/uws/jobs/{remote_id:int}", uwsviews.job, methods=["GET"]),
        Route("/uws/jobs/{remote_id:int}/phase", uwsviews.job_phase, methods=["GET"]),
        Route("/uws/jobs/{remote_id:int}/results", uwsviews.job_results, methods=["GET"]),
        Route("/uws/jobs/{remote_id:int}/error", uwsviews.job_error, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={
        NotFoundError: _not_found, 404: _not_found, UsageError: _bad_request,
        BridgeError: _unavailable})
    app.state.engine = engine
    app.state.config = config
    app.add_middleware(Guard, token=token)
    return app
