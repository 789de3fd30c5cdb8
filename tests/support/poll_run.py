"""Helpers and fixtures shared by several test modules (first written in
tests/unit/test_poll_run.py)."""

from __future__ import annotations

from tests.support.demo_runs import (
    control_fixture,
    demo_env,
)

_env = demo_env


control = control_fixture("rbp")
