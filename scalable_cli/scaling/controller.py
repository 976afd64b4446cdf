"""The adaptive controller: reads demand, decides per group, resizes through the engine.

The same loop runs inside a ``ScalableSession`` (a thread) and, for CLI-applied capacity,
as a detached process recorded in state as the ``controller`` resource
(``scalable.scaling.agent``). Resizing takes the state lock, plans and applies exactly as
``scalable apply`` does; every change is a ``scale_decision`` event with its reason.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from scalable.engine import Engine
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.scaling.demand import group_demand, scheduler_demand
from scalable.scaling.policy import AdaptivePolicy, Decision

log = logging.getLogger("scalable.scaling")


class Controller:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        spec = engine.base_target
        self.policies = {
            g.name: AdaptivePolicy(g.name, g.adaptive) for g in spec.groups if g.adaptive
        }
        adaptive = [g.adaptive for g in spec.groups if g.adaptive]
        self.interval = min((a.interval for a in adaptive), default=1.0)
        self.target_duration = min((a.target_duration for a in adaptive), default=5.0)
        self.decisions: list[Decision] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return bool(self.policies)

    def step(self, client: Any, now: float | None = None) -> list[Decision]:
        """One reading and, where warranted, one resize."""
        now = time.monotonic() if now is None else now
        state = self.engine.store.read()
        if state is None or SCHEDULER_ADDRESS not in state.outputs:
            return []
        raw = client.run_on_scheduler(scheduler_demand, target_duration=self.target_duration)
        demand = group_demand(self.engine.base_target, raw, self.target_duration)
        decisions = []
        for g in self.engine.base_target.groups:
            policy = self.policies.get(g.name)
            if policy is None:
                continue
            current = state.scale.get(g.name, g.count)
            d = policy.decide(now, policy.clamp(current), demand[g.name])
            if d is not None:
                decisions.append(d)
        if decisions:
            result = self.engine.scale(
                {d.group: d.after for d in decisions}, {d.group: d.reason for d in decisions}
            )
            for d in decisions:
                log.info("%s: %d → %d (%s)", d.group, d.before, d.after, d.reason)
            if result is not None and result.errors:
                log.warning("scaling was partial: %s", "; ".join(result.errors))
            self.decisions += decisions
        return decisions

    def run(self, client: Any, stop: threading.Event | None = None) -> None:
        stop = stop or self._stop
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.step(client)
            except Exception as exc:  # a failed reading must not end the controller
                log.warning("controller step failed: %s", exc)
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def start_thread(self, client: Any) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(client,), name="scalable-controller", daemon=True
        )
        self._thread.start()

    def stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
