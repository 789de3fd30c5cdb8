"""Fixtures of the status page tests: a database with demo runs (SQLite and
PostgreSQL, through ``engine``), the application, and a served copy for a browser."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from remotebridge.web.app import create_app
from tests.web.builders import Demo, populate


@pytest.fixture
def demo(engine: Engine, tmp_path: Path) -> Demo:
    """The demo runs of :mod:`tests.web.builders` in a fresh database."""
    return populate(engine, tmp_path)


@pytest.fixture
def app(engine: Engine, demo: Demo) -> Starlette:
    """The page without a token."""
    return create_app(engine, demo.config)


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    """A test client on the page without a token."""
    with TestClient(app) as c:
        yield c


@pytest.fixture
def served(app: Starlette) -> Iterator[str]:
    """The page served by uvicorn in a thread on a free 127.0.0.1 port; its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
