"""Prepare: turn a remote run's components into a reviewable job folder (no connection).

Public API::

    prepare_run(engine, config, remote_id, pretend=False) -> PrepareResult
    load_stages() -> dict[str, type[StageBase]]
    review_folder(path) -> dict
    review_run(path_base, remote_id) -> dict
"""

from remotebridge.prepare.registry import load_stages
from remotebridge.prepare.review import review_folder, review_job, review_run
from remotebridge.prepare.runner import PrepareResult, prepare_run

__all__ = ["PrepareResult", "load_stages", "prepare_run", "review_folder", "review_job",
           "review_run"]
