"""Streaming machine output: ``apply --json`` / ``destroy --json``, one JSON object a line.

Terraform's ``-json`` UI, in its words: every line is an object with ``@level``,
``@message``, ``@module`` (``scalable.ui``), ``@timestamp`` and ``type``; the types are
``version``, ``planned_change``, ``resource_drift``, ``change_summary``,
``apply_start``, ``apply_progress``, ``apply_complete``, ``apply_errored``, ``outputs``,
``diagnostic`` and ``log`` (docs/reference/streaming-json.rst has the format).

This is a :class:`~scalable.hooks.Hook`: the engine reports its steps as events and
this view writes each as a line the moment it happens (flushed), so a pipeline can
follow a long apply. Only what the engine cannot know — an error that stops the
command — is written by the command itself, through :meth:`StreamHook.diagnostic`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from scalable import addrs
from scalable._version import __version__
from scalable.events import (
    RESOURCE_CREATED,
    RESOURCE_CREATING,
    RESOURCE_DELETED,
    RESOURCE_DELETING,
    RESOURCE_UPDATED,
    RESOURCE_UPDATING,
)
from scalable.hooks import Hook
from scalable.payloads import (
    Payload,
    ResourceFailed,
    ResourceStep,
    StepCompleted,
    StepStarted,
    WorkersWaiting,
)
from scalable.planning.reasons import words

if TYPE_CHECKING:
    from scalable.planning.model import Plan

# Minor versions only add types and keys; a new major version is a breaking change.
UI_FORMAT_VERSION = "1.0"
MODULE = "scalable.ui"
# How often a resource whose provider call is still running is reported (Terraform: 10s).
PROGRESS_EVERY = 10.0

# Terraform's words for each action: (present participle, noun of completion).
_WORDS = {
    "create": ("Creating", "Creation"),
    "update": ("Modifying", "Modifications"),
    "delete": ("Destroying", "Destruction"),
}
_STARTS = {RESOURCE_CREATING: "create", RESOURCE_UPDATING: "update",
           RESOURCE_DELETING: "delete"}
_ENDS = {RESOURCE_CREATED: "create", RESOURCE_UPDATED: "update", RESOURCE_DELETED: "delete"}


def resource(address: str, type_: str, provider: str) -> dict[str, Any]:
    """Terraform's ``resource`` object for one of our addresses."""
    try:
        parsed = addrs.Address.parse(address)
        name = parsed.kind if parsed.name is None else f"{parsed.kind}.{parsed.name}"
        key: int | None = parsed.index
    except ValueError:  # an orphan's "?" address: say what we know
        name, key = address, None
    return {"addr": address, "resource_type": type_, "resource_name": name,
            "resource_key": key, "implied_provider": provider}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class StreamHook(Hook):
    """Writes the engine's steps as JSON lines to ``out`` (stdout), flushed at once."""

    def __init__(self, provider: str, *, out: TextIO | None = None,
                 every: float = PROGRESS_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.provider = provider
        self.out = out
        self.every = every
        self.clock = clock
        self._lock = threading.Lock()
        # Resources whose provider call is running: address -> (action, type, started).
        self._running: dict[str, tuple[str, str, float]] = {}
        self._wait_started: float | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.errored = False  # an apply_errored or an error diagnostic was written

    # -- writing ----------------------------------------------------------------------
    def emit(self, type_: str, message: str, level: str = "info", **fields: Any) -> None:
        line = {"@level": level, "@message": message, "@module": MODULE,
                "@timestamp": _now(), "type": type_, **fields}
        text = json.dumps(line, default=str, separators=(",", ":"))
        out = self.out or sys.stdout
        with self._lock:
            out.write(text + "\n")
            out.flush()

    def version(self) -> None:
        self.emit("version", f"scalable {__version__}", scalable=__version__,
                  ui=UI_FORMAT_VERSION)

    def diagnostic(self, summary: str, detail: str = "", severity: str = "error") -> None:
        if severity == "error":
            self.errored = True
        word = "Error" if severity == "error" else "Warning"
        self.emit("diagnostic", f"{word}: {summary}", level=severity,
                  diagnostic={"severity": severity, "summary": summary, "detail": detail})

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1.0)

    # -- the Hook interface -----------------------------------------------------------
    def progress(self, text: str) -> None:
        self.emit("log", text)

    def warning(self, text: str) -> None:
        self.diagnostic(text, severity="warning")

    def event(self, payload: Payload) -> None:
        if isinstance(payload, StepStarted):
            if payload.plan is not None:
                self.planned(payload.plan)
        elif isinstance(payload, ResourceStep):
            self._resource_step(payload)
        elif isinstance(payload, ResourceFailed):
            self._failed(payload)
        elif isinstance(payload, WorkersWaiting):
            self._waiting(payload)
        elif isinstance(payload, StepCompleted):
            self._completed(payload)

    # -- the plan ---------------------------------------------------------------------
    def planned(self, plan: Plan) -> None:
        for d in plan.drift:
            self.emit("resource_drift", f"{d.address}: Drift detected ({d.kind})",
                      change={"resource": resource(d.address, d.type, self.provider),
                              "action": d.kind, "reason": d.reason})
        for c in plan.actionable:
            reason = "; ".join(words(r) for r in c.reasons) or None
            self.emit("planned_change", f"{c.address}: Plan to {c.action}",
                      change={"resource": resource(c.address, c.type, self.provider),
                              "action": c.action, "reason": reason,
                              "hourly_cost_delta": c.hourly_delta})
        n = plan.counts
        self.emit("change_summary",
                  f"Plan: {n['add']} to add, {n['change']} to change, "
                  f"{n['destroy']} to destroy.",
                  changes={"add": n["add"], "change": n["change"], "remove": n["destroy"],
                           "operation": "plan"})

    # -- apply ------------------------------------------------------------------------
    def _resource_step(self, step: ResourceStep) -> None:
        res = resource(step.address, step.type, self.provider)
        if step.kind in _STARTS:
            action = _STARTS[step.kind]
            self._running[step.address] = (action, step.type, self.clock())
            self.emit("apply_start", f"{step.address}: {_WORDS[action][0]}...",
                      hook={"resource": res, "action": action,
                            **({"id_key": "id", "id_value": step.id} if step.id else {})})
            self._tick_later()
        elif step.kind in _ENDS:
            action = _ENDS[step.kind]
            elapsed = self._elapsed(step.address)
            id_text = f" [id={step.id}]" if step.id else ""
            self.emit("apply_complete",
                      f"{step.address}: {_WORDS[action][1]} complete after "
                      f"{elapsed:.0f}s{id_text}",
                      hook={"resource": res, "action": action, "elapsed_seconds": elapsed,
                            **({"id_key": "id", "id_value": step.id} if step.id else {})})

    def _failed(self, failed: ResourceFailed) -> None:
        self.errored = True
        elapsed = self._elapsed(failed.address)
        noun = _WORDS.get(failed.action, ("", failed.action.capitalize()))[1]
        self.emit("apply_errored", f"{failed.address}: {noun} errored after {elapsed:.0f}s",
                  level="error",
                  hook={"resource": resource(failed.address, failed.type, self.provider),
                        "action": failed.action, "elapsed_seconds": elapsed,
                        "error": failed.error})

    def _waiting(self, w: WorkersWaiting) -> None:
        if self._wait_started is None:
            self._wait_started = self.clock()
        self.emit("apply_progress", f"workers {w.ready}/{w.expected} ready",
                  hook={"resource": None, "action": "wait_ready",
                        "elapsed_seconds": round(self.clock() - self._wait_started, 3),
                        "ready": w.ready, "expected": w.expected})

    def _completed(self, done: StepCompleted) -> None:
        self._running.clear()
        verb, op = ("Destroy", "destroy") if done.destroy else ("Apply", "apply")
        state = "partially complete" if done.errors else "complete"
        self.emit("change_summary",
                  f"{verb} {state}! Resources: {done.added} added, {done.changed} changed, "
                  f"{done.destroyed} destroyed.",
                  changes={"add": done.added, "change": done.changed,
                           "remove": done.destroyed, "operation": op})
        if not done.destroy:
            self.emit("outputs", f"Outputs: {len(done.outputs)}",
                      outputs={k: {"sensitive": False, "type": "string", "value": v}
                               for k, v in sorted(done.outputs.items())})
        for err in done.errors:
            self.diagnostic(err)

    def _elapsed(self, address: str) -> float:
        running = self._running.pop(address, None)
        return 0.0 if running is None else round(self.clock() - running[2], 3)

    # -- "Still creating..." for calls that take long --------------------------------
    def _tick_later(self) -> None:
        if self._ticker is None and self.every > 0:
            self._ticker = threading.Thread(target=self._tick, name="scalable-ui-progress",
                                            daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            now = self.clock()
            for address, (action, type_, started) in list(self._running.items()):
                elapsed = now - started
                if elapsed < self.every:
                    continue
                self.emit("apply_progress",
                          f"{address}: Still {_WORDS[action][0].lower()}... "
                          f"[{elapsed:.0f}s elapsed]",
                          hook={"resource": resource(address, type_, self.provider),
                                "action": action, "elapsed_seconds": round(elapsed, 3)})
