"""Products on the site that must not come home: links, special files; and the staging
folders a killed pull left behind. A real one-exposure chip job on the local site,
then its products are tampered with before poll brings them home.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from remotebridge.poll import poll_runs
from tests.support.demo_runs import run_row as get
from tests.support.poll_hostile import assert_refused
from tests.support.poll_run import _env  # noqa: F401 - autouse fixture: the venv's python3
from tests.support.poll_runs import config, finished_job


def first_product(job_dir: Path) -> tuple[Path, Path]:
    """The remote and local path of the run's first permanent product."""
    for line in (job_dir / "outputs.manifest").read_text().splitlines()[1:]:
        remote, local, permanent = line.split("\t")[:3]
        if permanent == "1":
            return Path(remote), Path(local)
    raise AssertionError("no permanent product")


def link_to_passwd(product: Path, tmp: Path) -> None:
    product.unlink()
    product.symlink_to("/etc/passwd")


def link_to_own_file(product: Path, tmp: Path) -> None:
    twin = product.with_name("twin.fits")
    product.rename(twin)
    product.symlink_to(twin)


def link_to_a_folder(product: Path, tmp: Path) -> None:
    """The product is a link to a folder holding a file of its name (tar would read the
    folder, a careless check would follow it to the file)."""
    elsewhere = tmp / "a folder"
    elsewhere.mkdir()
    (elsewhere / product.name).write_bytes(product.read_bytes())
    product.unlink()
    product.symlink_to(elsewhere)


def link_to_own_folder(product: Path, tmp: Path) -> None:
    product.unlink()
    product.symlink_to(product.parent)


def folder_replaced_by_link(product: Path, tmp: Path) -> None:
    elsewhere = tmp / "elsewhere"
    shutil.move(product.parent, elsewhere)
    (elsewhere / product.name).write_bytes(b"someone else's data")
    product.parent.symlink_to(elsewhere)


@pytest.mark.parametrize(("tamper", "words"), [
    (link_to_passwd, ["symbolic link"]),
    (link_to_own_file, ["symbolic link"]),
    (link_to_a_folder, ["symbolic link"]),
    (link_to_own_folder, ["symbolic link"]),
    (folder_replaced_by_link, ["outside the run's own folders"]),
])
def test_link_products_are_refused(engine: Engine, tmp_path: Path,
                                   tamper: Callable[[Path, Path], None],
                                   words: list[str]) -> None:
    """A link to a file, a link to a folder, a link in a parent folder: fault 37."""
    rid, job_dir = finished_job(engine, tmp_path)
    remote, _local = first_product(job_dir)
    tamper(remote, tmp_path)
    assert_refused(engine, tmp_path, rid, 37, remote.name, *words)


def make_socket(product: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(product.parent)  # socket paths are limited to about 100 bytes
    try:
        sock.bind(product.name)
    finally:
        os.chdir(cwd)
    return sock


@pytest.mark.parametrize("kind", ["a socket", "a fifo", "a folder"])
def test_non_regular_product_is_a_fault_on_the_first_round(engine: Engine, tmp_path: Path,
                                                            kind: str) -> None:
    rid, job_dir = finished_job(engine, tmp_path)
    remote, _local = first_product(job_dir)
    remote.unlink()
    sock = None
    if kind == "a socket":
        sock = make_socket(remote)
    elif kind == "a fifo":
        os.mkfifo(remote)
    else:
        remote.mkdir()
    try:
        assert_refused(engine, tmp_path, rid, 38, remote.name, f"is {kind}")
    finally:
        if sock is not None:
            sock.close()


def test_stale_staging_folders_are_swept_and_counted(engine: Engine, tmp_path: Path) -> None:
    rid, job_dir = finished_job(engine, tmp_path)
    _remote, local = first_product(job_dir)
    host = socket.gethostname()
    local.parent.mkdir(parents=True, exist_ok=True)
    stale = local.parent / f".rb-staging-99999999@{host}-abcd1234"
    fresh = local.parent / f".rb-staging-99999998@{host}-efgh5678"
    for d in (stale, fresh):
        d.mkdir()
        (d / "000001").write_bytes(b"partial copy")
    old = time.time() - 7200
    for p in (stale / "000001", stale):
        os.utime(p, (old, old))
    out = poll_runs(engine, config(tmp_path), force=True)
    assert [(o.action, o.state) for o in out] == [("full", "full")], out
    assert "1 stale staging folders swept" in get(engine, rid).note
    assert not stale.exists() and fresh.exists()
    assert local.exists()
