"""The lost submit answer: an sbatch wrapper on the front ends and its switch.

Every front end's sshd puts ``P.bin`` first on the PATH of its sessions; the ``sbatch``
there is ``/usr/bin/sbatch`` unless `site drop-submit N` armed it. Then the next N
submissions are made for real and the connection carrying each is killed before the
answer goes back (the ssh master at home dies with it). `site dropped` counts them:
one line per dropped answer in ``P.drop/dropped`` (time, front end, sbatch's exit code
and its answer, which the caller never saw).
"""

import os
import shutil

from . import texts
from .config import CFG, P
from .proc import read, run, write

REAL_SBATCH = "/usr/bin/sbatch"


def ensure_wrapper():
    """The wrapper in ``P.bin`` and the switch folder, writable by the login user."""
    real = shutil.which("sbatch", path="/usr/bin:/usr/local/bin") or REAL_SBATCH
    write(os.path.join(P.bin, "sbatch"),
          texts.render("sbatch_wrapper", real_sbatch=real, drop_dir=P.drop), 0o755)
    os.makedirs(P.drop, exist_ok=True)
    run(["chown", f"{CFG['user']}:{CFG['user']}", P.drop])
    os.chmod(P.drop, 0o755)


def arm(n):
    """The next N submissions lose their answer (0 disarms); the count armed before."""
    if n < 0:
        raise SystemExit("site: drop-submit takes a number >= 0")
    ensure_wrapper()
    before = armed()
    path = os.path.join(P.drop, "armed")
    write(path, f"{n}\n")
    run(["chown", f"{CFG['user']}:{CFG['user']}", path])
    return before


def armed():
    """Submissions still to be dropped."""
    text = (read(os.path.join(P.drop, "armed"), "0") or "0").strip()
    return int(text) if text.isdigit() else 0


def dropped():
    """The answers dropped so far: one line each (time, host, rc, the lost answer)."""
    return [line for line in (read(os.path.join(P.drop, "dropped"), "") or "").splitlines()
            if line.strip()]
