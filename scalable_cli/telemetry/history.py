"""Task-time history for the objective planner (``scalable.scaling.objectives``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scalable.spec import TargetSpec


def task_durations(spec: TargetSpec, tag: str | None = None,
                   prefix: str | None = None) -> list[float]:
    """Compute seconds of this target's finished tasks across its runs (``tag``: only
    those tasks). Empty where nothing was recorded yet; never creates the database."""
    from scalable.telemetry.store import TelemetryDB

    db = TelemetryDB.for_root(spec.root)
    if not db.exists:
        return []
    try:
        return db.task_durations(spec.name, tag=tag, prefix=prefix)
    finally:
        db.close()
