"""Telemetry event kinds and their payloads: the vocabulary writers and readers share.

Writers: the engine (apply/destroy steps, scaling and objective decisions) and the
scheduler plugin (workers joining and leaving). Readers: ``scalable report``, the
dashboard and the objective planner. Events are stored as ``(ts, kind, worker, data)``
rows whose ``data`` is a JSON object; ``scalable.payloads`` holds the typed form of each
kind's ``data``. The kinds live apart from the payload classes because building those
(13 frozen dataclasses, ~15 ms on a 2-core machine) is a cost ``plan`` need not pay.

Standard library only: the scheduler plugin imports this on the scheduler.
"""

from __future__ import annotations

from typing import Final

# Where the scheduler's telemetry plugin keeps records: db | memory (pulled by the CLI,
# so a scheduler in memory mode must outlive its workers' removal) | off.
TELEMETRY_MODE_ENV: Final = "SCALABLE_TELEMETRY"

# -- kinds ---------------------------------------------------------------------------------
WORKER_ADDED: Final = "worker_added"
WORKER_REMOVED: Final = "worker_removed"
SCALE_DECISION: Final = "scale_decision"
# A scale-up held back by objectives or the budget (recorded once per group and count).
SCALE_BLOCKED: Final = "scale_blocked"
# A resize whose apply failed (not a decision: nothing changed as asked).
SCALE_FAILED: Final = "scale_failed"
BUDGET_WARNING: Final = "budget_warning"
BUDGET_EXHAUSTED: Final = "budget_exhausted"
OBJECTIVE_PLAN: Final = "objective_plan"
PRICING: Final = "pricing"
APPLY_START: Final = "apply_start"
APPLY_COMPLETE: Final = "apply_complete"
DESTROY_START: Final = "destroy_start"
DESTROY_COMPLETE: Final = "destroy_complete"
RESOURCE_CREATED: Final = "resource_created"
RESOURCE_DELETING: Final = "resource_deleting"
RESOURCE_DELETED: Final = "resource_deleted"
WORKER_PREEMPTED: Final = "worker_preempted"
# Steps a live view follows (``apply --json``): a resource's call began, a resource
# failed, workers registered so far.
RESOURCE_CREATING: Final = "resource_creating"
RESOURCE_UPDATING: Final = "resource_updating"
RESOURCE_UPDATED: Final = "resource_updated"
RESOURCE_FAILED: Final = "resource_failed"
WORKERS_WAITING: Final = "workers_waiting"
# @cacheable hits and misses heard since the plugin's last flush (scalable.cache.telemetry).
CACHE_CALLS: Final = "cache_calls"

# The budget guard's actions (the report's "Budget" lines).
BUDGET_ACTIONS: Final = (BUDGET_WARNING, BUDGET_EXHAUSTED)
# A worker's presence is the span between these two.
WORKER_SPAN: Final = (WORKER_ADDED, WORKER_REMOVED)
# Progress only a live view needs: telemetry keeps no row for these.
LIVE_ONLY: Final = (RESOURCE_CREATING, RESOURCE_UPDATING, WORKERS_WAITING)
# The engine's own steps (the report's "steps" section).
ENGINE_STEPS: Final = (
    APPLY_START,
    APPLY_COMPLETE,
    DESTROY_START,
    DESTROY_COMPLETE,
    RESOURCE_CREATED,
    RESOURCE_DELETED,
)


def start_kind(destroy: bool) -> str:
    return DESTROY_START if destroy else APPLY_START


def complete_kind(destroy: bool) -> str:
    return DESTROY_COMPLETE if destroy else APPLY_COMPLETE
