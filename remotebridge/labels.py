"""Label summaries: which labels exist per stage, how many stage runs are ready or taken."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, case, func, select

from remotebridge.db.bridge import RemoteComponent
from remotebridge.db.engine import read_session
from remotebridge.db.pipeline import STAGE_NEW, STAGE_RUN_TABLES


@dataclass
class LabelCount:
    """Counts for one (stage, label)."""

    stage: str
    label: str
    total: int
    ready: int
    taken: int


def label_counts(engine: Engine, stage: str | None = None) -> list[LabelCount]:
    """One row per (stage, label) with total, ready (new and free) and taken counts."""
    out: list[LabelCount] = []
    stages = [stage] if stage else list(STAGE_RUN_TABLES)
    with read_session(engine) as session:
        for name in stages:
            model, pk = STAGE_RUN_TABLES[name]
            id_col = getattr(model, pk)
            taken = (RemoteComponent.stage_id.is_not(None))
            query = (
                select(
                    model.label,  # type: ignore[attr-defined]
                    func.count(),
                    func.sum(case((model.state == STAGE_NEW, 1), else_=0)  # type: ignore[attr-defined]
                             - case((taken & (model.state == STAGE_NEW), 1), else_=0)),  # type: ignore[attr-defined]
                    func.count(RemoteComponent.stage_id),
                )
                .outerjoin(RemoteComponent, (RemoteComponent.stage == name)
                           & (RemoteComponent.stage_id == id_col))
                .group_by(model.label)  # type: ignore[attr-defined]
                .order_by(model.label)  # type: ignore[attr-defined]
            )
            for label, total, ready, ntaken in session.execute(query).all():
                out.append(LabelCount(name, label, int(total), int(ready or 0), int(ntaken)))
    return out
