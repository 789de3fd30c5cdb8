"""The test site's sbatch wrapper (ops/testsite/rbsite/templates/sbatch_wrapper), run
without the site: a fake sbatch stands for Slurm's, a copy of bash named ``sshd-fake``
for the sshd process that serves the connection."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ops" / "testsite"))

from rbsite import texts  # noqa: E402


def wrapper(tmp: Path) -> tuple[Path, Path, Path]:
    """(wrapper, switch folder, log of the fake sbatch's calls)."""
    calls = tmp / "calls"
    fake = tmp / "real-sbatch"
    fake.write_text(f'#!/bin/bash\necho "$*" >> {calls}\necho "4242;cluster"\n')
    fake.chmod(0o755)
    drop = tmp / "drop"
    drop.mkdir()
    path = tmp / "sbatch"
    path.write_text(texts.render("sbatch_wrapper", real_sbatch=str(fake), drop_dir=str(drop)))
    path.chmod(0o755)
    return path, drop, calls


def under_fake_sshd(tmp: Path, command: str) -> subprocess.CompletedProcess[str]:
    """``command`` run by a shell whose process name starts with sshd, and which
    prints ``still-here`` after it (unless it was killed)."""
    sshd = tmp / "sshd-fake"
    shutil.copy("/bin/bash", sshd)
    return subprocess.run([str(sshd), "-c", f"{command}; echo still-here $?"],
                          capture_output=True, text=True, timeout=30, check=False)


def test_unarmed_wrapper_is_sbatch(tmp_path: Path) -> None:
    path, drop, calls = wrapper(tmp_path)
    r = under_fake_sshd(tmp_path, f"{path} --parsable -- job.sh")
    assert r.stdout.splitlines() == ["4242;cluster", "still-here 0"]
    assert calls.read_text() == "--parsable -- job.sh\n"
    assert not (drop / "dropped").exists()


def test_armed_wrapper_submits_then_kills_the_connection_once(tmp_path: Path) -> None:
    path, drop, calls = wrapper(tmp_path)
    (drop / "armed").write_text("1\n")
    r = under_fake_sshd(tmp_path, f"{path} --parsable --comment=rb:tok -- job.sh")
    assert r.returncode == -9 and "4242" not in r.stdout and "still-here" not in r.stdout
    assert calls.read_text() == "--parsable --comment=rb:tok -- job.sh\n"  # submitted
    assert (drop / "armed").read_text().strip() == "0"
    [line] = (drop / "dropped").read_text().splitlines()
    assert line.split()[2:] == ["rc=0", "4242;cluster"]
    again = under_fake_sshd(tmp_path, f"{path} --parsable -- job2.sh")
    assert again.stdout.splitlines() == ["4242;cluster", "still-here 0"]  # disarmed
    assert len((drop / "dropped").read_text().splitlines()) == 1
