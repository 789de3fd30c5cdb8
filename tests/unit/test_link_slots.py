"""The cross-process session limit: never more than N channels on one master."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from remotebridge.errors import TransientLinkError
from remotebridge.ssh import SessionSlots

CTX = mp.get_context("fork")


def _worker(sock: str, count: int, state: str, rounds: int) -> None:
    slots = SessionSlots(sock, count, timeout=30)
    for _ in range(rounds):
        with slots.acquire() as index:
            marker = Path(state) / f"{os.getpid()}.{index}"
            marker.write_text("")
            held = len(list(Path(state).iterdir()))
            with open(Path(state).parent / "peaks", "a") as f:
                f.write(f"{held}\n")
            time.sleep(0.01)
            marker.unlink()


def test_many_processes_never_exceed_the_limit(tmp_path: Path) -> None:
    sock = tmp_path / "sock"
    state = tmp_path / "held"
    state.mkdir()
    procs = [CTX.Process(target=_worker, args=(str(sock), 4, str(state), 15))
             for _ in range(24)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    peaks = [int(x) for x in (tmp_path / "peaks").read_text().split()]
    assert len(peaks) == 24 * 15
    assert max(peaks) <= 4
    assert max(peaks) >= 2  # they did overlap
    assert SessionSlots(sock, 4).busy() == 0


def _hold(sock: str, count: int, ready: str) -> None:
    slots = SessionSlots(sock, count)
    with slots.acquire():
        Path(ready).write_text("")
        time.sleep(60)


def test_waiter_times_out_as_transient(tmp_path: Path) -> None:
    sock = str(tmp_path / "sock")
    holder = CTX.Process(target=_hold, args=(sock, 1, str(tmp_path / "ready")))
    holder.start()
    try:
        while not (tmp_path / "ready").exists():
            time.sleep(0.01)
        assert SessionSlots(sock, 1).busy() == 1
        start = time.monotonic()
        with pytest.raises(TransientLinkError, match="busy"), \
                SessionSlots(sock, 1, timeout=0.3).acquire():
            pass
        assert time.monotonic() - start < 2
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    # the kernel dropped the dead holder's lock: the slot is free again
    with SessionSlots(sock, 1, timeout=1).acquire() as index:
        assert index == 0


def test_slot_files_sit_beside_the_socket(tmp_path: Path) -> None:
    slots = SessionSlots(tmp_path / "abc", 3)
    with slots.acquire() as i:
        assert (tmp_path / f"abc.slot.{i}").exists()
        assert slots.busy() == 1
    assert slots.busy() == 0
