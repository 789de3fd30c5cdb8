"""Products come home only as the job recorded them (size and sha256 in its summary).

A real one-exposure chip job (local site, real local scheduler) ends; then a product
is changed on the "remote side" before poll pulls it: fault 41, nothing installed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from remotebridge.poll import PollFault
from remotebridge.poll.faults import FAULT_PRODUCT_ALTERED
from remotebridge.poll.remote_files import parse_summary_products
from tests.support.demo_runs import demo_env as _env  # noqa: F401 - autouse: venv's python3
from tests.support.poll_hostile import assert_refused
from tests.support.poll_runs import finished_job


def product(job_dir: Path, suffix: str) -> Path:
    """The remote path of the first recorded product ending in ``suffix``."""
    _tasks, recorded = parse_summary_products((job_dir / "job_summary.jsonl").read_bytes())
    assert recorded is not None
    return Path(next(p for p in sorted(recorded) if p.endswith(suffix)))


def flip(data: bytes) -> bytes:
    """Same size, other content."""
    return data[:-1] + bytes([data[-1] ^ 1])


def _host_char(data: bytes) -> bytes:
    """One character of the first hostname changed: still a valid, planned record."""
    at = data.index(b'"hostname": "') + len(b'"hostname": "')
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


@pytest.mark.parametrize(("suffix", "change", "words"), [
    (".ch.fits", flip, ["sha256"]),
    (".stats.json", flip, ["sha256"]),
    (".dbinfo.jsonl", lambda d: _host_char(d), ["sha256"]),
    (".ch.fits", lambda d: d[:-10], ["bytes on the site, expected"]),
], ids=["image-same-size", "stats-same-size", "dbinfo-same-size", "image-truncated"])
def test_product_altered_after_the_job_recorded_it(engine: Engine, tmp_path: Path,
                                                   suffix: str,
                                                   change: Callable[[bytes], bytes],
                                                   words: list[str]) -> None:
    rid, job_dir = finished_job(engine, tmp_path)
    path = product(job_dir, suffix)
    path.write_bytes(change(path.read_bytes()))
    assert_refused(engine, tmp_path, rid, FAULT_PRODUCT_ALTERED, "not what the job recorded",
                   str(path), *words)


def test_summary_records_every_permanent_product(engine: Engine, tmp_path: Path) -> None:
    _rid, job_dir = finished_job(engine, tmp_path)
    head = json.loads((job_dir / "job_summary.jsonl").read_text().splitlines()[0])
    assert head["version"] == 2
    _tasks, recorded = parse_summary_products((job_dir / "job_summary.jsonl").read_bytes())
    assert recorded is not None and head["products"] == len(recorded)
    # 2 chips x (image, stats, log) + the component's dbinfo file
    assert len(recorded) == 7
    for path, (size, _digest) in recorded.items():
        assert Path(path).stat().st_size == size


def _summary(*products: object, declared: int | None = None) -> bytes:
    task = {"task_id": 1, "stage_id": 7, "phase": "cmd", "rc": 0, "start": None,
            "end": None, "host": None}
    head = {"format": "remotebridge.job_summary", "version": 2, "tasks": 1,
            "products": len(products) if declared is None else declared}
    return "".join(json.dumps(x) + "\n" for x in (head, task, *products)).encode()


@pytest.mark.parametrize(("products", "declared"), [
    ([{"product": "/a", "size": 1, "sha256": "0" * 63}], None),
    ([{"product": "/a", "size": "1", "sha256": "0" * 64}], None),
    ([{"product": "/a", "size": 1, "sha256": "0" * 64, "x": 1}], None),
    ([{"product": "/a", "size": 1, "sha256": "0" * 64}] * 2, None),
    ([{"product": "/a", "size": 1, "sha256": "0" * 64}], 2),
], ids=["short-digest", "size-text", "extra-field", "twice", "count"])
def test_bad_product_records_are_malformed(products: list[object], declared: int | None
                                           ) -> None:
    with pytest.raises(PollFault) as err:
        parse_summary_products(_summary(*products, declared=declared))
    assert err.value.fault == 32


def test_good_product_records_parse() -> None:
    tasks, recorded = parse_summary_products(
        _summary({"product": "/a b", "size": 3, "sha256": "f" * 64}))
    assert list(tasks) == [1] and recorded == {"/a b": (3, "f" * 64)}
