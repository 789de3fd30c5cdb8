"""``remotetool serve``: where it may listen, the token options, lazy import, and the
real command answering over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from remotebridge.cli import remotetool
from remotebridge.web import server
from remotebridge.web.text import visible
from tests.web.builders import Demo

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "example.org"])
def test_other_address_without_token_is_a_usage_error(host: str, isolated_env: str) -> None:
    res = CliRunner().invoke(remotetool.main, ["serve", "--host", host])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--token" in lines[0] and host in lines[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_needs_no_token(host: str) -> None:
    server.check_bind(host, None)


def test_token_options(tmp_path: Path, isolated_env: str) -> None:
    tok = tmp_path / "tok"
    tok.write_text("abc\n")
    res = CliRunner().invoke(remotetool.main, ["serve", "--token", "x", "--token-file", str(tok)])
    assert res.exit_code == 2 and "not both" in res.stderr
    (tmp_path / "empty").write_text("\n")
    res = CliRunner().invoke(remotetool.main, ["serve", "--token-file", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "empty" in res.stderr
    res = CliRunner().invoke(remotetool.main, ["serve", "--token-file", str(tmp_path / "nope")])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert server.read_token(None, str(tok)) == "abc"


def test_serve_passes_host_port_and_token(tmp_path: Path, db_url: str, isolated_env: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda engine, config, **kw: seen.update(kw))
    tok = tmp_path / "tok"
    tok.write_text("from-file\n")
    res = CliRunner().invoke(remotetool.main, ["--db", db_url, "serve", "--host", "0.0.0.0",
                                               "--port", "9999", "--token-file", str(tok)])
    assert res.exit_code == 0, res.output
    assert seen == {"host": "0.0.0.0", "port": 9999, "token": "from-file"}


def test_help_does_not_import_starlette() -> None:
    code = ("import sys\nfrom remotebridge.cli.remotetool import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'starlette' not in sys.modules and 'uvicorn' not in sys.modules\n"
            "print('clean')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert out.returncode == 0, out.stderr
    assert "serve" in out.stdout and out.stdout.strip().endswith("clean")


def test_visible_escapes_controls_but_keeps_lines() -> None:
    assert visible("a\tb\nc") == "a\tb\nc"
    assert visible("\x1b[2J\x00\x7f\u202eevil") == "\\x1b[2J\\x00\\x7f\\u202eevil"
    assert visible("ünïcode ok") == "ünïcode ok"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not listening yet


def test_the_command_serves_the_page(tmp_path: Path, engine: Engine, db_url: str,
                                     demo: Demo, isolated_env: str) -> None:
    port = _free_port()
    tok = tmp_path / "tok"
    tok.write_text("t0ken\n")
    cmd = [sys.executable, "-c", "from remotebridge.cli.remotetool import main; main()",
           "--db", db_url, "serve",
           "--port", str(port), "--token-file", str(tok)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/runs"
        deadline = time.monotonic() + 60
        while _get(url, "t0ken") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.3)
        assert _get(url) == 401
        assert _get(f"http://127.0.0.1:{port}/uws/jobs/{demo.failed}", "t0ken") == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
