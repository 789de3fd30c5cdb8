"""Behaviour of the remotebridge test site (ops/testsite/site).

Run as root:  python3 -m pytest -p no:cacheprovider tests/site -v
"""

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.site

# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def master(site, host, persist=120):
    """A ControlMaster connection to `host` (costs one dmz token); yields the -o options
    that route further commands over it."""
    d = tempfile.mkdtemp(prefix="rbm", dir="/tmp")  # short: unix socket path limit
    sock = os.path.join(d, "m")
    opts = ["-o", "ControlPath=" + sock]
    r = subprocess.run(
        site.ssh_base_argv(host)[:-1]
        + ["-o", "ControlMaster=yes", "-o", f"ControlPersist={persist}", *opts, "-fN", host],
        env=site.ssh_env(True),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    try:
        yield opts
    finally:
        subprocess.run(
            site.ssh_base_argv(host)[:-1] + [*opts, "-O", "exit", host],
            capture_output=True,
            timeout=20,
        )
        shutil.rmtree(d, ignore_errors=True)


def check_master(site, host, opts):
    return (
        subprocess.run(
            site.ssh_base_argv(host)[:-1] + [*opts, "-O", "check", host],
            capture_output=True,
            timeout=20,
        ).returncode
        == 0
    )


def over(site, host, opts, command, timeout=120, input=None):
    """Run over an existing master, never answering an OTP prompt."""
    return site.ssh(
        host, command, "-o", "BatchMode=yes", *opts, with_token=False, timeout=timeout, input=input
    )


def out(r):
    return r.stdout.decode(errors="replace") if isinstance(r.stdout, bytes) else r.stdout


def err(r):
    return r.stderr.decode(errors="replace") if isinstance(r.stderr, bytes) else r.stderr


@pytest.fixture(scope="module")
def fe1(test_site):
    """One shared master to fe1 for the slurm / storage tests."""
    with master(test_site, "fe1") as opts:
        yield opts


# ----------------------------------------------------------------------------- status


def test_status_json_describes_the_site(test_site):
    st = test_site.status()
    assert st["state"] == "up"
    assert set(st["hosts"]) >= {"dmz", "fe1", "fe2", "fe3", "cn1"}
    for h in ("dmz", "fe1", "fe2", "fe3"):
        assert st["hosts"][h]["address"].startswith("10.77.0.")
        assert st["hosts"][h]["sshd"] is True
    for k in ("ssh_config", "identity_file", "known_hosts", "askpass"):
        assert os.path.exists(st[k]), k
    assert os.path.isdir(st["scratch_root"]) and os.path.isdir(st["permanent_root"])
    assert st["slurm_partition"] == "batch"
    assert isinstance(st["auth_count"], int)
    cfg = Path(st["ssh_config"]).read_text()
    for h in ("dmz", "fe1", "fe2", "fe3"):
        assert f"Host {h} " in cfg
    assert "ControlMaster" not in cfg
    assert "ProxyJump dmz" in cfg


def test_site_up_again_is_quick_and_harmless(test_site):
    t0 = time.time()
    r = subprocess.run([test_site.site_command, "up"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert time.time() - t0 < 15
    assert test_site.status()["state"] == "up"


# ----------------------------------------------------------------------------- ssh / dmz


def test_front_end_not_reachable_directly_from_home(test_site):
    fe = test_site.hosts["fe1"]["address"]
    with pytest.raises(OSError):
        socket.create_connection((fe, 22), timeout=3).close()
    r = test_site.ssh(
        "fe1",
        "true",
        "-o",
        "ProxyJump=none",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        with_token=False,
    )
    assert r.returncode == 255
    # ... while the dmz reaches it
    r = subprocess.run(
        test_site.netns_argv("dmz") + ["nc", "-z", "-w", "3", fe, "22"], capture_output=True
    )
    assert r.returncode == 0


def test_login_needs_key_and_token(site_alone, test_site, tmp_path):
    n0 = test_site.auth_count()
    # no token (nothing can answer the OTP prompt): refused
    r = test_site.ssh("fe1", "true", "-o", "BatchMode=yes", with_token=False)
    assert r.returncode == 255
    assert "Permission denied" in err(r)
    # a wrong token: refused
    bad = tmp_path / "badpass"
    bad.write_text("#!/bin/sh\necho 000000x\n")
    bad.chmod(0o755)
    env = test_site.ssh_env(True)
    env["SSH_ASKPASS"] = str(bad)
    r = subprocess.run(
        test_site.ssh_base_argv("fe1") + ["true"], env=env, capture_output=True, timeout=60
    )
    assert r.returncode == 255
    # a token but the wrong key: refused (publickey comes first)
    other = tmp_path / "otherkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        Path(test_site.ssh_config).read_text().replace(test_site.identity_file, str(other))
    )
    r = subprocess.run(
        ["ssh", "-F", str(cfg), "fe1", "true"],
        env=test_site.ssh_env(True),
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 255
    assert test_site.auth_count() == n0
    # key + token from askpass: in
    tok_before = test_site.token()
    r = test_site.ssh("fe1", "echo $RB_SITE_HOST; ip -4 -o addr show pub0")
    assert r.returncode == 0, err(r)
    assert out(r).splitlines()[0] == "fe1"
    assert test_site.hosts["fe1"]["address"] in out(r)
    assert test_site.auth_count() == n0 + 1
    assert test_site.token() != tok_before  # that token is spent


def test_token_printed_by_site_works_by_hand(site_alone, test_site, tmp_path):
    """A person types `site token` at the prompt: emulate with an askpass that
    echoes the token printed by `site token` (peek, no reservation)."""
    tok = test_site.token()
    ap = tmp_path / "typed"
    ap.write_text(f"#!/bin/sh\necho {tok}\n")
    ap.chmod(0o755)
    env = test_site.ssh_env(True)
    env["SSH_ASKPASS"] = str(ap)
    r = subprocess.run(
        test_site.ssh_base_argv("fe2") + ["echo ok"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    # replaying the same token is refused
    r = subprocess.run(
        test_site.ssh_base_argv("fe2") + ["echo ok"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 255


def test_dmz_only_bounces(test_site):
    r = test_site.ssh("dmz", "echo shell")
    assert r.returncode != 0
    assert "shell" not in out(r)
    assert "no shell" in err(r)


def test_master_reuse_costs_no_token(site_alone, test_site):
    n0 = test_site.auth_count()
    with master(test_site, "fe2") as opts:
        assert test_site.auth_count() == n0 + 1
        for i in range(8):
            r = over(test_site, "fe2", opts, f"echo {i}")
            assert r.returncode == 0, err(r)
            assert out(r).strip() == str(i)
        # concurrent sessions over the same master
        procs = [
            subprocess.Popen(
                test_site.ssh_base_argv("fe2")[:-1]
                + ["-o", "BatchMode=yes", *opts, "fe2", f"sleep 0.5; echo c{i}"],
                stdout=subprocess.PIPE,
                env=test_site.ssh_env(False),
            )
            for i in range(6)
        ]
        outs = [p.communicate(timeout=60)[0].decode().strip() for p in procs]
        assert outs == [f"c{i}" for i in range(6)]
        assert test_site.auth_count() == n0 + 1


def test_expire_kills_masters_and_new_login_needs_token(site_alone, test_site):
    with master(test_site, "fe3") as opts:
        assert check_master(test_site, "fe3", opts)
        test_site.expire()
        assert test_site.wait_until(lambda: not check_master(test_site, "fe3", opts), 10), (
            "master still alive after expire"
        )
        r = test_site.ssh("fe3", "true", "-o", "BatchMode=yes", with_token=False)
        assert r.returncode == 255
        n0 = test_site.auth_count()
        r = test_site.ssh("fe3", "true")
        assert r.returncode == 0, err(r)
        assert test_site.auth_count() == n0 + 1


def test_cut_and_heal_front_end_link(site_alone, test_site):
    fe = test_site.hosts["fe2"]["address"]
    probe = test_site.netns_argv("dmz") + ["nc", "-z", "-w", "2", fe, "22"]
    try:
        test_site.cut("fe2")
        assert test_site.status()["hosts"]["fe2"]["link"] == "down"
        assert subprocess.run(probe, capture_output=True).returncode != 0
    finally:
        test_site.heal("fe2")
    assert test_site.status()["hosts"]["fe2"]["link"] == "up"
    assert test_site.wait_until(
        lambda: subprocess.run(probe, capture_output=True).returncode == 0, 10
    )


# ----------------------------------------------------------------------------- network


def test_compute_node_has_no_route_home(test_site):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((test_site.home_address, 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                srv.accept()[0].close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        # control: the listener is reachable from the dmz
        r = subprocess.run(
            test_site.netns_argv("dmz")
            + ["nc", "-z", "-w", "3", test_site.home_address, str(port)],
            capture_output=True,
        )
        assert r.returncode == 0
        for cn in test_site.compute_nodes:
            t0 = time.time()
            r = subprocess.run(
                test_site.netns_argv(cn)
                + [
                    "python3",
                    "-c",
                    "import socket;socket.create_connection("
                    f"('{test_site.home_address}',{port}),timeout=5)",
                ],
                capture_output=True,
                text=True,
            )
            assert r.returncode != 0
            assert "unreachable" in r.stderr.lower()
            assert time.time() - t0 < 3
    finally:
        stop.set()
        t.join(2)
        srv.close()


def test_shaped_link_rate_within_15_percent(site_alone, test_site):
    rate_mbit = 80
    size = 24_000_000
    payload = os.urandom(size)
    test_site.shape("fe3", f"{rate_mbit}mbit")
    try:
        with master(test_site, "fe3") as opts:
            over(test_site, "fe3", opts, "true")  # warm up the mux
            t0 = time.monotonic()
            r = over(test_site, "fe3", opts, "cat > /dev/null", input=payload)
            up = size * 8 / (time.monotonic() - t0) / 1e6
            assert r.returncode == 0, err(r)
            t0 = time.monotonic()
            r = over(test_site, "fe3", opts, f"head -c {size} /dev/urandom")
            down = size * 8 / (time.monotonic() - t0) / 1e6
            assert r.returncode == 0 and len(r.stdout) == size
    finally:
        test_site.shape("fe3", "default")
    print(f"fe3 at {rate_mbit} Mbit/s: upload {up:.1f} Mbit/s, download {down:.1f} Mbit/s")
    for measured in (up, down):
        assert abs(measured - rate_mbit) / rate_mbit < 0.15, (up, down)


# ----------------------------------------------------------------------------- storage


def test_storage_shared_between_front_ends_and_distinct_from_home(test_site, fe1):
    name = f"shared-{uuid.uuid4().hex[:8]}"
    path = os.path.join(test_site.user_scratch, name)
    r = over(test_site, "fe1", fe1, f"echo from-fe1 > {path} && echo ok")
    assert out(r).strip() == "ok", err(r)
    with master(test_site, "fe2") as o2:
        r = over(test_site, "fe2", o2, f"cat {path}; ls -d {test_site.user_permanent}")
        assert out(r).split() == ["from-fe1", test_site.user_permanent]
    assert not test_site.scratch_root.startswith(os.path.expanduser("~"))


def test_purge_removes_old_scratch_files(test_site, fe1):
    d = os.path.join(test_site.user_scratch, f"purge-{uuid.uuid4().hex[:8]}")
    r = over(
        test_site,
        "fe1",
        fe1,
        f"mkdir -p {d} && echo old > {d}/old && touch -d '2 hours ago' {d}/old && "
        f"echo new > {d}/new && echo keep > {test_site.user_permanent}/keep-{os.path.basename(d)}",
    )
    assert r.returncode == 0, err(r)
    test_site.purge(older_than=3600)
    assert not os.path.exists(os.path.join(d, "old"))
    assert os.path.exists(os.path.join(d, "new"))
    test_site.purge()
    assert not os.path.exists(os.path.join(d, "new"))
    assert os.path.isdir(test_site.user_scratch)
    keep = os.path.join(test_site.user_permanent, "keep-" + os.path.basename(d))
    assert os.path.exists(keep)
    os.unlink(keep)


# ----------------------------------------------------------------------------- slurm


def test_sbatch_from_front_end_runs_on_compute_node(test_site, fe1):
    d = os.path.join(test_site.user_scratch, f"job-{uuid.uuid4().hex[:8]}")
    script = (
        "#!/bin/sh\necho node=$SLURMD_NODENAME ns=$(ip netns identify $$) "
        f"addr=$(ip -4 -o addr show clu0 | awk '{{print $4}}') > {d}/where\n"
    )
    r = over(
        test_site,
        "fe1",
        fe1,
        f"mkdir -p {d} && cd {d} && cat > job.sh && "
        f"sbatch --wait --parsable -p {test_site.slurm_partition} -o {d}/out job.sh",
        input=script.encode(),
        timeout=90,
    )
    assert r.returncode == 0, err(r)
    where = dict(kv.split("=", 1) for kv in Path(d, "where").read_text().split())
    assert where["node"] in test_site.compute_nodes
    assert where["ns"] == test_site.hosts[where["node"]]["netns"]
    assert where["addr"].split("/")[0] == test_site.hosts[where["node"]]["cluster_address"]


def test_multi_prog_size_limit(test_site, fe1):
    d = os.path.join(test_site.user_scratch, f"mp-{uuid.uuid4().hex[:8]}")
    script = "\n".join(
        [
            "#!/bin/sh",
            f"cd {d}",
            "printf '0 echo small-ran\\n' > small.conf",
            # ~62 kB > 60000
            "python3 -c \"print('0 echo big-ran'); [print('#' * 99) for i in range(620)]\""
            " > big.conf",
            "srun -n1 --multi-prog small.conf > small.out 2>&1; echo $? > small.rc",
            "srun -n1 --multi-prog big.conf > big.out 2>&1; echo $? > big.rc",
            "",
        ]
    )
    r = over(
        test_site,
        "fe1",
        fe1,
        f"mkdir -p {d} && cd {d} && cat > job.sh && sbatch --wait -o out job.sh",
        input=script.encode(),
        timeout=90,
    )
    assert r.returncode == 0, err(r)
    rd = lambda f: Path(d, f).read_text()  # noqa: E731
    assert os.path.getsize(os.path.join(d, "big.conf")) > 60000
    assert rd("small.rc").strip() == "0" and "small-ran" in rd("small.out")
    assert rd("big.rc").strip() != "0"
    assert "too large" in rd("big.out") and "big-ran" not in rd("big.out")
    # srun straight from the front end too
    r = over(test_site, "fe1", fe1, f"cd {d} && srun -n1 --multi-prog big.conf")
    assert r.returncode != 0 and "too large" in err(r)
    r = over(test_site, "fe1", fe1, f"cd {d} && srun -n1 --multi-prog small.conf")
    assert r.returncode == 0 and "small-ran" in out(r)


def test_stop_and_start_slurm(site_alone, test_site, fe1):
    try:
        test_site.stop_slurm()
        r = over(test_site, "fe1", fe1, "scontrol ping")
        assert "DOWN" in out(r)
        r = over(test_site, "fe1", fe1, "sbatch --wrap true", timeout=60)
        assert r.returncode != 0
    finally:
        test_site.start_slurm()
    r = over(test_site, "fe1", fe1, "scontrol ping; squeue -h -o %i | wc -l")
    assert "UP" in out(r)
    r = over(test_site, "fe1", fe1, "sbatch --wait -o /dev/null --wrap true", timeout=60)
    assert r.returncode == 0, err(r)


def test_one_token_for_many_commands_over_three_masters(site_alone, test_site):
    """The pattern the link code needs: one dmz master (one token), the front-end
    masters jump through it (ssh -W over the dmz mux), 24 concurrent commands."""
    n0 = test_site.auth_count()
    with master(test_site, "dmz") as dmz_opts:
        dmz_sock = dmz_opts[1].split("=", 1)[1]
        jump = (
            f"ProxyCommand=ssh -F {test_site.ssh_config} -o BatchMode=yes "
            f"-o ControlPath={dmz_sock} -W [%h]:%p dmz"
        )
        with contextlib.ExitStack() as stack:
            fe_opts = {}
            for fe in test_site.front_ends:
                d = tempfile.mkdtemp(prefix="rbm", dir="/tmp")
                stack.callback(shutil.rmtree, d, True)
                o = ["-o", f"ControlPath={d}/m"]
                r = subprocess.run(
                    test_site.ssh_base_argv(fe)[:-1]
                    + [
                        "-o",
                        jump,
                        "-o",
                        "BatchMode=yes",
                        "-o",
                        "ControlMaster=yes",
                        "-o",
                        "ControlPersist=60",
                        *o,
                        "-fN",
                        fe,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    env=test_site.ssh_env(False),
                )
                assert r.returncode == 0, r.stderr
                stack.callback(
                    subprocess.run,
                    test_site.ssh_base_argv(fe)[:-1] + [*o, "-O", "exit", fe],
                    capture_output=True,
                    timeout=20,
                )
                fe_opts[fe] = o
            procs = []
            for i in range(24):
                fe = test_site.front_ends[i % 3]
                procs.append(
                    (
                        fe,
                        i,
                        subprocess.Popen(
                            test_site.ssh_base_argv(fe)[:-1]
                            + [
                                "-o",
                                "BatchMode=yes",
                                *fe_opts[fe],
                                fe,
                                f"sleep 1; echo $RB_SITE_HOST {i}",
                            ],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env=test_site.ssh_env(False),
                        ),
                    )
                )
            for fe, i, p in procs:
                o, e = p.communicate(timeout=60)
                assert p.returncode == 0, e
                assert o.decode().split() == [fe, str(i)]
    assert test_site.auth_count() == n0 + 1


def test_concurrent_fresh_logins_each_get_a_token(site_alone, test_site):
    """Three masters started at the same moment, each answering its own OTP prompt
    through the askpass script: all get in, three tokens spent."""
    n0 = test_site.auth_count()
    procs = [
        subprocess.Popen(
            test_site.ssh_base_argv(fe) + ["echo $RB_SITE_HOST"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=test_site.ssh_env(True),
        )
        for fe in test_site.front_ends
    ]
    outs = []
    for p in procs:
        o, e = p.communicate(timeout=60)
        assert p.returncode == 0, e
        outs.append(o.decode().strip())
    assert outs == test_site.front_ends
    assert test_site.auth_count() == n0 + 3
