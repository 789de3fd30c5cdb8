"""The campaign driver (tests/support/campaign.py) without the site: the crontab it reads,
the order it runs lines and scenario steps in, what it records."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tests.support.campaign import (
    CRONTAB,
    Campaign,
    CronLine,
    Crontab,
    Kind,
    Step,
    cron_env,
    parse_minutes,
    shell_runner,
)


def test_minute_fields() -> None:
    assert parse_minutes("*/15") == {0, 15, 30, 45}
    assert parse_minutes("2-59/5") == set(range(2, 60, 5))
    assert parse_minutes("7") == {7}
    assert parse_minutes("1,3-4") == {1, 3, 4}
    assert parse_minutes("*") == set(range(60))
    for bad in ("60", "5-2", "*/0"):
        with pytest.raises(ValueError):
            parse_minutes(bad)


def test_the_shipped_crontab_in_cron_order() -> None:
    tab = Crontab.parse(CRONTAB.read_text(), replace={"PV3": "demo"})
    assert {"RB", "REMOTEBRIDGE_CONFIG", "SHELL"} <= set(tab.env)
    words = [line.command.split("--quiet ")[1].split()[0] for line in tab.lines]
    assert words == ["definebyquery", "prepare", "exec", "poll", "check"]
    assert "control-tool" in tab.lines[4].command
    assert all("PV3" not in line.command for line in tab.lines)
    assert [[w.command.split("--quiet ")[1].split()[0] for w in tab.due(m)] for m in range(5)] \
        == [["definebyquery", "check"], ["prepare"], ["exec"], ["poll"], []]
    assert tab.due(5)[0].command == tab.lines[0].command and len(tab.due(5)) == 1


def test_hours_or_days_are_refused() -> None:
    with pytest.raises(ValueError, match="line 2"):
        Crontab.parse("A=1\n0 3 * * * echo nightly\n")


class Fake:
    """Records what it was asked to run; answers each command's planned exit code."""

    def __init__(self, codes: Mapping[str, int] | None = None) -> None:
        self.calls: list[str] = []
        self.codes = dict(codes or {})

    def __call__(self, command: str, env: Mapping[str, str]
                 ) -> tuple[int, str, str, tuple[str, ...]]:
        self.calls.append(command)
        return self.codes.get(command, 0), "", "", (f"traced {command}",)


def two_lines() -> Crontab:
    return Crontab({}, (CronLine(parse_minutes("*/5"), "a"),
                        CronLine(parse_minutes("2-59/5"), "b")))


def test_steps_fire_once_in_order_before_the_minute_s_lines() -> None:
    fake = Fake()
    seen: list[str] = []
    steps = [Step("cut", lambda c: c.minute >= 3, lambda c: seen.append(f"cut@{c.minute}")),
             Step("start", lambda c: c.since("cut") >= 4,
                  lambda c: c.operator("control-tool start")),
             Step("early", lambda c: True, lambda c: seen.append(f"early@{c.minute}"))]
    camp = Campaign(two_lines(), {}, fake, steps)
    assert camp.run(lambda c: c.minute >= 10, max_minutes=60)
    # "early" was true from the start, but fires only after the steps before it
    assert seen == ["cut@3", "early@8"] and camp.fired == {"cut": 3, "start": 7, "early": 8}
    assert fake.calls == ["a", "b", "a", "control-tool start", "b"]
    assert [(r.minute, r.kind) for r in camp.ran if r.command == "control-tool start"] == \
        [(7, Kind.OPERATOR)]
    assert [r.command for r in camp.of(Kind.CRON)] == ["a", "b", "a", "b"]
    assert camp.commands_run()[0] == "traced a"


def test_run_gives_up_after_max_minutes_with_a_step_unfired() -> None:
    camp = Campaign(two_lines(), {}, Fake(), [Step("never", lambda c: False, lambda c: None)])
    assert not camp.run(lambda c: True, max_minutes=12)
    assert camp.minute == 12 and camp.fired == {} and len(camp.of(Kind.CRON)) == 5


def test_exit_codes_are_recorded_per_run() -> None:
    camp = Campaign(two_lines(), {}, Fake({"b": 75}))
    camp.run(lambda c: c.minute >= 8, max_minutes=20)
    assert [(r.minute, r.command, r.rc) for r in camp.ran] == \
        [(0, "a", 0), (2, "b", 75), (5, "a", 0), (7, "b", 75)]


def test_shell_runner_traces_every_expanded_command_apart_from_stderr() -> None:
    run = shell_runner(timeout=30)
    rc, out, err, trace = run('for s in chip cam; do echo "$RB/tool $s"; done; echo oops >&2; '
                              "exit 3", {"RB": "/venv/bin", "PATH": "/usr/bin:/bin"})
    assert (rc, out, err) == (3, "/venv/bin/tool chip\n/venv/bin/tool cam\n", "oops\n")
    assert "echo '/venv/bin/tool chip'" in trace and "echo '/venv/bin/tool cam'" in trace
    assert "exit 3" in trace


def test_cron_env_has_no_askpass_and_takes_the_overrides() -> None:
    tab = Crontab({"RB": "/home/ipp/x", "SHELL": "/bin/bash"}, ())
    env = cron_env(tab, {"RB": "/venv/bin"},
                   base={"HOME": "/h", "SSH_ASKPASS": "/a", "DISPLAY": ":0", "PATH": "/x"})
    assert env == {"HOME": "/h", "PATH": "/usr/bin:/bin", "RB": "/venv/bin",
                   "SHELL": "/bin/bash"}
