"""JobState and the per-scheduler state tables."""

from __future__ import annotations

import pytest

from remotebridge.schedulers import TERMINAL_JOB_STATES, JobState, map_state
from remotebridge.schedulers.base import check_token, job_name
from remotebridge.schedulers.local import LOCAL_STATES
from remotebridge.schedulers.moab import MOAB_STATES, moab_state
from remotebridge.schedulers.slurm import SLURM_STATES, slurm_state


def test_terminal_set_is_explicit() -> None:
    assert {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED,
                                   JobState.TIMEOUT} == TERMINAL_JOB_STATES
    assert not JobState.UNKNOWN.terminal and not JobState.HELD.terminal
    assert all(s.terminal == (s in TERMINAL_JOB_STATES) for s in JobState)


def test_every_member_documented() -> None:
    import inspect

    src = inspect.getsource(JobState)
    for member in JobState:
        assert f'{member.name} = "{member.value}"\n    """' in src


@pytest.mark.parametrize("table", [SLURM_STATES, MOAB_STATES, LOCAL_STATES])
def test_tables_map_to_jobstates(table: dict[str, JobState]) -> None:
    assert all(isinstance(v, JobState) for v in table.values())


@pytest.mark.parametrize("native, want", [
    ("PENDING", JobState.QUEUED), ("RUNNING", JobState.RUNNING),
    ("COMPLETING", JobState.RUNNING), ("COMPLETED", JobState.COMPLETED),
    ("FAILED", JobState.FAILED), ("NODE_FAIL", JobState.FAILED),
    ("OUT_OF_MEMORY", JobState.FAILED), ("CANCELLED by 1000", JobState.CANCELLED),
    ("CANCELLED+", JobState.CANCELLED), ("TIMEOUT", JobState.TIMEOUT),
    ("SUSPENDED", JobState.SUSPENDED), ("REQUEUE_HOLD", JobState.HELD),
    ("EXPEDITING", JobState.QUEUED), ("SPECIAL_EXIT", JobState.HELD),
    ("REVOKED", JobState.LISTED),
])
def test_slurm_states(native: str, want: JobState) -> None:
    assert slurm_state(native) is want


def test_slurm_pending_held_by_user_is_held() -> None:
    assert slurm_state("PENDING", "JobHeldUser") is JobState.HELD
    assert slurm_state("PENDING", "JobHeldAdmin") is JobState.HELD
    assert slurm_state("PENDING", "Resources") is JobState.QUEUED


@pytest.mark.parametrize("state, code, want", [
    ("Idle", "", JobState.QUEUED), ("Running", "", JobState.RUNNING),
    ("Starting", "", JobState.RUNNING), ("UserHold", "", JobState.HELD),
    ("Deferred", "", JobState.HELD), ("BatchHold", "", JobState.HELD),
    ("Completed", "0", JobState.COMPLETED), ("Completed", "1", JobState.FAILED),
    ("Completed", "-11", JobState.FAILED), ("Removed", "0", JobState.CANCELLED),
    ("Vacated", "-1", JobState.CANCELLED), ("Suspended", "", JobState.SUSPENDED),
    ("Completed", "CNCLD", JobState.CANCELLED), ("SubmitErr", "", JobState.FAILED),
    ("NotRun", "", JobState.FAILED), ("Staged", "", JobState.QUEUED),
    ("Allocating", "", JobState.RUNNING), ("Lost", "", JobState.UNKNOWN),
    ("Unknown", "", JobState.LISTED),
])
def test_moab_states(state: str, code: str, want: JobState) -> None:
    attrs = {"State": state}
    if code:
        attrs["CompletionCode"] = code
    assert moab_state(attrs) is want


def test_unmapped_native_state_is_listed_with_warning() -> None:
    """Listed under a state we do not know is not 'forgotten': LISTED, never UNKNOWN."""
    with pytest.warns(RuntimeWarning, match="unknown native job state 'BOGUS'"):
        assert map_state("BOGUS", SLURM_STATES, "slurm") is JobState.LISTED
    with pytest.warns(RuntimeWarning):
        assert slurm_state("NEWFANGLED") is JobState.LISTED
    with pytest.warns(RuntimeWarning):
        assert moab_state({"State": "Reticulating"}) is JobState.LISTED
    assert not JobState.LISTED.terminal


def test_tokens_and_names() -> None:
    assert job_name("chip remote/17", "a1b2") == "chip_remote_17.a1b2"
    with pytest.raises(ValueError):
        check_token("bad token;rm")
    with pytest.raises(ValueError):
        check_token("")
