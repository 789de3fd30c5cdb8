"""Batch schedulers on the remote side: Slurm, Moab, and a local stand-in.

``make_scheduler(link, site)`` picks the adapter named by ``site.scheduler``.
"""

from __future__ import annotations

from remotebridge.config import SchedulerKind, SiteConfig
from remotebridge.schedulers.base import (
    TERMINAL_JOB_STATES,
    JobState,
    Scheduler,
    job_name,
    map_state,
)
from remotebridge.schedulers.local import LocalScheduler
from remotebridge.schedulers.moab import MoabScheduler
from remotebridge.schedulers.slurm import SlurmScheduler
from remotebridge.ssh.base import Link

__all__ = [
    "TERMINAL_JOB_STATES", "JobState", "LocalScheduler", "MoabScheduler", "Scheduler",
    "SlurmScheduler", "job_name", "make_scheduler", "map_state",
]

_KINDS: dict[SchedulerKind, type[Scheduler]] = {
    SchedulerKind.SLURM: SlurmScheduler,
    SchedulerKind.MOAB: MoabScheduler,
    SchedulerKind.LOCAL: LocalScheduler,
}


def make_scheduler(link: Link, site: SiteConfig) -> Scheduler:
    """The scheduler adapter of ``site``, talking through ``link``."""
    return _KINDS[SchedulerKind(site.scheduler)](link, site)
