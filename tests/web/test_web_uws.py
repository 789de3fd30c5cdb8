"""The UWS 1.1 view, read with pyvo's UWS parser (a client written elsewhere)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from pyvo.io.uws import parse_job, parse_job_list
from sqlalchemy import Engine, update
from starlette.testclient import TestClient

from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.states import RunState
from remotebridge.web import uws
from tests.web.builders import Demo

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"


def _jobs(client: TestClient, query: str = "") -> list[tuple[int, str]]:
    r = client.get("/uws/jobs" + query)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml")
    assert UWS_NS in r.text and 'version="1.1"' in r.text
    return [(int(j.jobid), str(j.phase)) for j in parse_job_list(io.BytesIO(r.content))]


def test_job_list_has_every_run_with_its_phase(client: TestClient, demo: Demo) -> None:
    assert sorted(_jobs(client)) == sorted([
        (demo.new, "PENDING"), (demo.running, "EXECUTING"), (demo.failed, "ERROR"),
        (demo.other, "PENDING")])


def test_job_list_phase_filter(client: TestClient, demo: Demo) -> None:
    assert _jobs(client, "?PHASE=ERROR") == [(demo.failed, "ERROR")]
    both = _jobs(client, "?PHASE=ERROR&PHASE=EXECUTING")
    assert sorted(both) == sorted([(demo.failed, "ERROR"), (demo.running, "EXECUTING")])
    assert _jobs(client, "?PHASE=COMPLETED") == []
    assert client.get("/uws/jobs?PHASE=RUNNING").status_code == 400


def _set_created(engine: Engine, rid: int, when: datetime) -> None:
    with write_session(engine) as s:
        s.execute(update(RemoteRun).where(RemoteRun.remote_id == rid).values(created=when))


def test_job_list_last_and_after(client: TestClient, engine: Engine, demo: Demo) -> None:
    t0 = datetime(2026, 3, 1, 12, 0, 0)
    order = [demo.other, demo.failed, demo.new, demo.running]
    for i, rid in enumerate(order):
        _set_created(engine, rid, t0 + timedelta(hours=i))
    assert [j for j, _ in _jobs(client, "?LAST=2")] == [demo.running, demo.new]
    after = [j for j, _ in _jobs(client, "?AFTER=2026-03-01T13:30:00Z")]
    assert sorted(after) == sorted([demo.new, demo.running])
    assert _jobs(client, "?AFTER=2026-03-01T14:00:00&PHASE=EXECUTING&LAST=5") == [
        (demo.running, "EXECUTING")]
    assert _jobs(client, "?AFTER=2026-03-01T14:00:00&PHASE=PENDING") == []
    assert client.get("/uws/jobs?LAST=0").status_code == 400
    assert client.get("/uws/jobs?AFTER=yesterday").status_code == 400


def test_job_document_of_a_run_in_error(client: TestClient, demo: Demo) -> None:
    r = client.get(f"/uws/jobs/{demo.failed}")
    assert r.status_code == 200
    job = parse_job(io.BytesIO(r.content))
    assert job.version == "1.1"
    assert int(job.jobid) == demo.failed and str(job.phase) == "ERROR"
    assert job.runid == "demo/chip"
    assert job.creationtime is not None and job.starttime is not None
    assert job.endtime is not None
    assert {p.id_: p.content for p in job.parameters}["fault"] == "31"
    assert [res.href for res in job.results] == ["file:///home/out/c1.fits"]
    message = str(job.errorsummary.message.content)
    assert message.startswith("fault 31: poll: <script>alert('x')</script>")
    assert "\x1b" not in message and "\\x1b[31m" in message


def test_job_document_of_a_running_run(client: TestClient, demo: Demo) -> None:
    job = parse_job(io.BytesIO(client.get(f"/uws/jobs/{demo.running}").content))
    assert str(job.phase) == "EXECUTING" and job.errorsummary is None
    assert job.starttime is not None and job.endtime is None
    assert list(job.results) == []
    assert client.get(f"/uws/jobs/{demo.running}/phase").text == "EXECUTING"


def test_results_and_error_endpoints(client: TestClient, demo: Demo) -> None:
    r = client.get(f"/uws/jobs/{demo.failed}/results")
    assert r.status_code == 200 and UWS_NS in r.text
    assert 'href="file:///home/out/c1.fits"' in r.text and "c1.tmp" not in r.text
    err = client.get(f"/uws/jobs/{demo.failed}/error")
    assert err.status_code == 200 and err.headers["content-type"].startswith("text/plain")
    assert err.text.startswith("fault 31: poll: <script>") and "\x1b" not in err.text
    assert client.get(f"/uws/jobs/{demo.running}/error").status_code == 404


def test_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/uws/jobs/999").status_code == 404


@pytest.mark.parametrize("state", list(RunState))
def test_every_state_has_a_uws_phase(state: RunState) -> None:
    assert uws.phase(state.value) in uws.ALL_PHASES - {"UNKNOWN"}
    assert uws.phase("bogus") == "UNKNOWN"
