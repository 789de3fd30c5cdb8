"""``definebyquery``: group ready stage runs of one label into a new remote run.

Ready means: the stage run has that label, is in pipeline state ``new``, and is
not a component of any remote run yet. The unique constraint on
remoteComponent(stage, stage_id) guarantees that even two hosts defining at the
same instant cannot put one stage run into two remote runs; on PostgreSQL an
advisory lock per (stage, label) makes the loser wait instead of fail.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Select, exists, func, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from remotebridge.config import Config, data_dir
from remotebridge.db.bridge import RemoteComponent, RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.db.pipeline import STAGE_NEW, STAGE_RUN_TABLES
from remotebridge.db.statemachine import record
from remotebridge.errors import DatabaseUnavailable, NotFoundError, UsageError
from remotebridge.states import RunState


@dataclass
class DefineResult:
    """What one definebyquery did (or would do, with pretend)."""

    stage: str
    label: str
    remote_id: int | None = None
    stage_ids: list[int] = field(default_factory=list)
    pretend: bool = False

    @property
    def count(self) -> int:
        """How many components the new run holds."""
        return len(self.stage_ids)


def default_path_base(stage: str) -> str:
    """Where job folders go when --path-base is not given."""
    return str(data_dir() / "jobs" / stage)


def define_by_query(
    engine: Engine,
    config: Config,
    *,
    label: str,
    stage: str,
    limit: int | None = None,
    site: str | None = None,
    path_base: str | None = None,
    pretend: bool = False,
) -> DefineResult:
    """Create one remote run from the ready stage runs of ``label`` (see module doc)."""
    if stage not in STAGE_RUN_TABLES:
        raise UsageError(f"unknown stage '{stage}' (known: {', '.join(STAGE_RUN_TABLES)})")
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    site_cfg = config.site(site or config.stage(stage).site or None)
    # Stored absolute: every later command (on any host, from any cwd) finds it.
    base = os.path.abspath(path_base or config.stage(stage).path_base
                           or default_path_base(stage))
    for attempt in range(3):
        try:
            with write_session(engine) as session:
                _lock(session, stage, label)
                return _define(session, stage, label, limit, site_cfg.name, base, pretend)
        except IntegrityError:
            # Another host committed the same stage runs between our read and our
            # insert; a fresh transaction sees them and picks the remaining ones.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


LOCK_WAIT_S = 60
"""How long definebyquery waits for another host defining the same stage and label.
Cron starts one every few minutes on each host: past this, the other host is doing the
work, and a queue of waiting commands (a slow database, many overlapping lines) must
not grow without bound. The loser exits 75 and the next cron round tries again."""

LOCK_NOT_AVAILABLE = "55P03"
"""PostgreSQL's SQLSTATE for a lock wait cut by ``lock_timeout``."""


def _lock(session: Session, stage: str, label: str) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: BEGIN IMMEDIATE already serialises (and bounds) the writers
    key = zlib.crc32(f"definebyquery:{stage}:{label}".encode())
    before = session.execute(text("SELECT current_setting('lock_timeout')")).scalar_one()
    session.execute(text("SELECT set_config('lock_timeout', :t, true)"),
                    {"t": f"{LOCK_WAIT_S * 1000}ms"})
    try:
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    except OperationalError as exc:
        if getattr(exc.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
            raise
        raise DatabaseUnavailable(
            f"another process has been defining {stage} runs of label {label!r} for over "
            f"{LOCK_WAIT_S} s", hint="nothing to do: the next cron round tries again") from None
    # the database's own setting again for the rest of the transaction
    session.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": before})


def ready_query(stage: str, label: str, limit: int | None) -> Select[Any]:
    """SELECT of the ids of ready stage runs, oldest first."""
    model, pk = STAGE_RUN_TABLES[stage]
    id_col = getattr(model, pk)
    taken = exists().where(RemoteComponent.stage == stage, RemoteComponent.stage_id == id_col)
    query = (
        select(id_col)
        .where(model.label == label, model.state == STAGE_NEW, ~taken)  # type: ignore[attr-defined]
        .order_by(id_col)
    )
    return query.limit(limit) if limit else query


def _define(session: Session, stage: str, label: str, limit: int | None, site: str,
            base: str, pretend: bool) -> DefineResult:
    ids = list(session.execute(ready_query(stage, label, limit)).scalars())
    result = DefineResult(stage=stage, label=label, stage_ids=ids, pretend=pretend)
    if not ids:
        _require_label(session, stage, label)
        return result
    if pretend:
        return result
    run = RemoteRun(stage=stage, label=label, site=site, state=RunState.NEW.value,
                    path_base=str(Path(base)))
    session.add(run)
    session.flush()
    session.execute(
        insert(RemoteComponent),
        [{"remote_id": run.remote_id, "stage_id": i, "stage": stage, "state": "new",
          "fault": 0, "attempts": 0} for i in ids],
    )
    record(session, run.remote_id, None, RunState.NEW.value,
           note=f"definebyquery: {len(ids)} {stage} runs of label {label}")
    result.remote_id = run.remote_id
    return result


def _require_label(session: Session, stage: str, label: str) -> None:
    """NotFoundError when no stage run of any stage carries the label (a likely typo).

    A label known to another stage is not an error: its later stages have no runs until
    the pipeline advances, and cron asks for every stage every round (exit 0, quiet)."""
    for model, _pk in STAGE_RUN_TABLES.values():
        first = select(model).where(model.label == label).limit(1)  # type: ignore[attr-defined]
        if session.execute(select(func.count()).select_from(first.subquery())).scalar_one():
            return
    raise NotFoundError(
        f"no stage run has label '{label}' (none for {stage} or any other stage)",
        hint=f"check the label; 'remotetool labels --stage {stage}' lists them",
    )
