"""Database layer: models, engine/session set-up, migrations and the state machine."""

from remotebridge.db import bridge, pipeline
from remotebridge.db.base import Base

__all__ = ["Base", "bridge", "pipeline"]
