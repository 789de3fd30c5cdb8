"""The status page through Starlette's test client: pages, escaping, token, file links."""

from __future__ import annotations

import os
import re

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from remotebridge.states import RunState
from remotebridge.web.app import create_app
from tests.web.builders import LOG_TEXT, PUSH_NOTE, Demo, move


def _rows(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="run-(\d+)"', html)]


def test_runs_page_lists_every_run_with_counts(client: TestClient, demo: Demo) -> None:
    r = client.get("/runs")
    assert r.status_code == 200
    assert _rows(r.text) == [demo.new, demo.running, demo.failed, demo.other]
    assert '<b data-count="new">2</b>' in r.text
    assert '<b data-count="run">1</b>' in r.text
    assert '<b data-count="error">1</b>' in r.text
    assert client.get("/").text.count('<tr id="run-') == 4


def test_runs_page_filters_by_label_stage_and_state(client: TestClient, demo: Demo) -> None:
    assert _rows(client.get("/runs?label=other").text) == [demo.other]
    assert _rows(client.get("/runs?state=error").text) == [demo.failed]
    assert _rows(client.get("/runs?label=demo&stage=chip&state=new").text) == [demo.new]
    assert _rows(client.get("/runs?stage=warp").text) == []
    assert client.get("/runs?state=bogus").status_code == 404


def test_partial_is_the_live_fragment_and_follows_the_database(
        client: TestClient, engine: Engine, demo: Demo) -> None:
    part = client.get("/runs?partial=1").text
    assert "<html" not in part and f'<tr id="run-{demo.new}">' in part
    move(engine, demo.new, RunState.CANCELLED, "withdrawn")
    part = client.get("/runs?partial=1").text
    row = part.split(f'<tr id="run-{demo.new}">')[1].split("</tr>")[0]
    assert 'data-state="cancelled"' in row


def test_run_page_shows_history_allocation_transfers_and_log(
        client: TestClient, demo: Demo) -> None:
    page = client.get(f"/runs/{demo.failed}").text
    assert "pending</td><td>run</td>" in page and "run</td><td>error</td>" in page
    assert "<dt>walltime</dt><dd>00:20:00</dd>" in page
    assert "chip 6: failed, fault 3" in page
    assert "ValueError: bad &lt;b&gt;pixel&lt;/b&gt;" in page
    assert f'href="/runs/{demo.failed}/files/logs/task-2.log"' in page
    for name in ("job.sh", "plan.jsonl", "outputs.manifest", "allocation.json"):
        assert f'href="/runs/{demo.failed}/files/{name}"' in page
    running = client.get(f"/runs/{demo.running}").text
    assert PUSH_NOTE in running.split('id="transfers"')[1]


def test_untrusted_text_is_shown_as_text(client: TestClient, demo: Demo) -> None:
    page = client.get(f"/runs/{demo.failed}").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "\x1b" not in page
    assert "\\x1b[31mred\\x1b[0m" in page


def test_unknown_run_is_404(client: TestClient) -> None:
    r = client.get("/runs/999")
    assert r.status_code == 404 and "999" in r.text


def test_sites_page_names_site_and_front_end(client: TestClient) -> None:
    page = client.get("/sites").text
    assert 'id="site-demo"' in page and "<td>localhost</td>" in page
    assert "local (no master)" in page
    assert "not paused" in page and "runs in auth" in page


def test_sites_page_shows_the_pause_and_its_reason(client: TestClient, engine: Engine) -> None:
    """What control-tool check knows: the pause (kept in the database) and its reason."""
    from remotebridge.db import pause as pausedb
    from remotebridge.db.engine import write_session

    with write_session(engine) as s:
        pausedb.pause(s, "demo", default_site=True, reason="<b>maintenance</b> until 14:00",
                      by="ops")
    page = client.get("/sites").text
    assert "paused since" in page and "&lt;b&gt;maintenance&lt;/b&gt; until 14:00" in page


def test_get_only_and_safety_headers(client: TestClient) -> None:
    assert client.post("/runs").status_code == 405
    assert client.delete("/uws/jobs/1").status_code == 405
    r = client.get("/runs")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"


def test_token_is_required_on_every_request(engine: Engine, demo: Demo) -> None:
    with TestClient(create_app(engine, demo.config, token="s3cret")) as c:
        for url in ("/runs", f"/runs/{demo.failed}", "/static/style.css", "/uws/jobs"):
            assert c.get(url).status_code == 401
            assert c.get(url + "?token=wrong").status_code == 401
            assert c.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get(url, headers={"Authorization": "Bearer s3cret"}).status_code == 200
            assert c.get(url + "?token=s3cret").status_code == 200
        page = c.get("/runs?token=s3cret").text
        assert f'href="/runs/{demo.failed}?token=s3cret"' in page
        assert 'href="/static/style.css?token=s3cret"' in page


@pytest.mark.parametrize("name", [
    "../remote_1/job.sh", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "/etc/passwd",
    "logs/../../x", "secret.txt", "logs", "logs/missing.log", "job.sh%00"])
def test_file_links_stay_in_the_folder(client: TestClient, demo: Demo, name: str) -> None:
    folder = demo.jobs / f"remote_{demo.failed}"
    (folder / "secret.txt").write_text("not listed")
    (demo.jobs / "x").write_text("outside")
    r = client.get(f"/runs/{demo.failed}/files/{name}")
    assert r.status_code == 404
    assert "not listed" not in r.text and "outside" not in r.text


def test_file_links_refuse_symlinks_out(client: TestClient, demo: Demo) -> None:
    folder = demo.jobs / f"remote_{demo.failed}"
    outside = demo.jobs / "outside.txt"
    outside.write_text("private")
    (folder / "job.sh").unlink()
    os.symlink(outside, folder / "job.sh")
    os.symlink(outside, folder / "logs" / "leak.log")
    assert client.get(f"/runs/{demo.failed}/files/job.sh").status_code == 404
    assert client.get(f"/runs/{demo.failed}/files/logs/leak.log").status_code == 404
    page = client.get(f"/runs/{demo.failed}").text
    assert "private" not in page and "leak.log" not in page


def test_file_link_serves_the_file_as_plain_text(client: TestClient, demo: Demo) -> None:
    r = client.get(f"/runs/{demo.failed}/files/job.sh")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "<script>job</script>" in r.text
    assert client.get(f"/runs/{demo.failed}/files/logs/task-2.log").text == LOG_TEXT


def test_database_trouble_is_503_with_the_message(client: TestClient,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from remotebridge import runs
    from remotebridge.errors import DatabaseUnavailable

    def down(*args: object, **kwargs: object) -> None:
        raise DatabaseUnavailable("database is locked <now>")

    monkeypatch.setattr(runs, "list_runs", down)
    r = client.get("/runs?partial=1")
    assert r.status_code == 503 and "database is locked &lt;now&gt;" in r.text


def test_a_long_log_shows_its_end(client: TestClient, demo: Demo) -> None:
    from remotebridge.runview import LOG_TAIL_BYTES

    lines = [f"line {i:06d} of a chatty task" for i in range(LOG_TAIL_BYTES // 10)]
    log = demo.jobs / f"remote_{demo.failed}" / "logs" / "task-9.log"
    log.write_text("\n".join(lines) + "\n")
    page = client.get(f"/runs/{demo.failed}").text
    section = page.split("logs/task-9.log</a>")[1].split("</details>")[0]
    assert "its end shown" in section
    assert lines[-1] in section and lines[0] not in section
