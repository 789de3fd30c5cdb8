"""Which tasks a retry runs: whole components, or only the failed tasks of each.

A component failed when any of its cmd or post tasks did not return 0. When the
stage's cmd tasks are independent (``independent_tasks``: chip, one task per chip)
only its failed cmd tasks run again, with all its post tasks (they gather what the
cmd tasks made, e.g. the dbinfo); the tasks that succeeded keep their status files
on the site, so the next job summary still shows them done. Otherwise every cmd and
post task of the component runs again. The component's ``attempts`` count the
submissions it took part in, whichever of its tasks ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from remotebridge.poll.remote_files import TaskResult


def retry_task_ids(independent: bool, plan: Mapping[int, tuple[int, str]],
                   summary: Mapping[int, TaskResult],
                   components: Mapping[int, Sequence[int]]) -> list[int]:
    """The task ids to run again for the failed ``components`` (``{stage_id: task ids}``)."""
    ids: set[int] = set()
    for tids in components.values():
        if not independent:
            ids.update(tids)
            continue
        failed = [t for t in tids if plan[t][1] == "cmd" and not _ok(summary.get(t))]
        post = [t for t in tids if plan[t][1] != "cmd"]
        ids.update(failed + post)
    return sorted(ids)


def _ok(result: TaskResult | None) -> bool:
    return result is not None and result.rc == 0
