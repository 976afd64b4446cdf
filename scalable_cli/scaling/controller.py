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
from collections.abc import Callable
from typing import Any

from scalable.engine import ApplyResult, Engine
from scalable.events import BUDGET_EXHAUSTED, BUDGET_WARNING
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.payloads import BudgetAction, ScaleBlocked
from scalable.preemption import PREEMPTION_TOPIC
from scalable.scaling.bounds import ObjectiveBounds
from scalable.scaling.budget import BudgetGuard, cancel_everything, cancel_message
from scalable.scaling.demand import group_demand, scheduler_demand
from scalable.scaling.policy import AdaptivePolicy, Decision

log = logging.getLogger("scalable.scaling")

# How long a preempted worker's replacement is looked for (its instance may take a while
# to go once Dask has left it), and how often the controller re-plans meanwhile.
REPLACE_WINDOW = 600.0
REPLACE_EVERY = 2.0
# How long a detached controller waits for the run's first apply to be recorded.
BOUNDS_WAIT = 60.0
# For a detached controller: (known yet?, the run's objective bounds or None).
BoundsSource = Callable[[], "tuple[bool, ObjectiveBounds | None, BudgetGuard | None]"]


class Controller:
    def __init__(
        self,
        engine: Engine,
        *,
        bounds: ObjectiveBounds | None = None,
        bounds_source: BoundsSource | None = None,
        budget: BudgetGuard | None = None,
    ) -> None:
        self.engine = engine
        spec = engine.base_target
        self.policies = {
            g.name: AdaptivePolicy(g.name, g.adaptive) for g in spec.groups if g.adaptive
        }
        adaptive = [g.adaptive for g in spec.groups if g.adaptive]
        self.interval = min((a.interval for a in adaptive), default=1.0)
        self.target_duration = min((a.target_duration for a in adaptive), default=5.0)
        # Decisions carried out (a resize the engine applied), in order.
        self.decisions: list[Decision] = []
        # Preemptions read from the scheduler's event log, and those still to replace.
        self.preemptions: list[dict[str, Any]] = []
        self.replacements = 0
        self._pending: dict[str, float] = {}
        self._last_replan = 0.0
        # Scale-ups the objectives held back: (group, wanted, allowed, reason), each once.
        self.blocked: list[tuple[str, int, int, str]] = []
        self.bounds = bounds if bounds is None or bounds.group in self.policies else None
        self._bounds_source = bounds_source if bounds is None else None
        self._bounds_wait_until = time.monotonic() + BOUNDS_WAIT
        self.budget = budget
        if budget is not None:
            budget.interval = self.interval
        # Set once the budget ran out: from then on the controller only fails new work.
        self.exhausted = False
        # Set once there is nothing left to control (the budget destroyed the target).
        self.finished = False
        self._stop_message = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_engine(cls, engine: Engine) -> Controller:
        """A controller bound by the engine's objective plan (and its budget), if any."""
        goal = engine.objective
        if goal is None:
            return cls(engine)
        started = engine.objective_asked_at or time.time()
        budget = None
        obj = goal.objectives
        if (
            obj.budget_usd is not None
            and goal.hourly_per_worker is not None
            and goal.hourly_fixed is not None
        ):
            budget = BudgetGuard.from_event(goal.event().to_data(), started)
        group = engine.base_target.group(goal.group)
        bounds = (
            None
            if group.adaptive is None
            else ObjectiveBounds.from_event(goal.event().to_data(), started, group.adaptive.maximum)
        )
        return cls(engine, bounds=bounds, budget=budget)

    @property
    def needed(self) -> bool:
        """Whether a loop is needed: adaptive groups to resize, or a budget to guard."""
        return bool(self.policies) or self.budget is not None

    def _ready(self) -> bool:
        """A detached controller decides nothing until it knows the run's objectives."""
        if self._bounds_source is None:
            return True
        try:
            known, bounds, budget = self._bounds_source()
        except Exception as exc:  # an unreadable database must not stop scaling for good
            log.warning("could not read the run's objectives: %s", exc)
            known, bounds, budget = False, None, None
        if not known and time.monotonic() > self._bounds_wait_until:
            log.warning(
                "no record of this run's objectives after %.0f s; scaling without them", BOUNDS_WAIT
            )
            known = True
        if known:
            self.bounds = bounds if bounds is None or bounds.group in self.policies else None
            if budget is not None:
                budget.interval = self.interval
                self.budget = budget
            self._bounds_source = None
        return known

    @property
    def active(self) -> bool:
        return bool(self.policies)

    def step(self, client: Any, now: float | None = None) -> list[Decision]:
        """One reading and, where warranted, one resize."""
        now = time.monotonic() if now is None else now
        state = self.engine.store.read()
        if state is None or SCHEDULER_ADDRESS not in state.outputs:
            return []
        if self.exhausted:
            # Work submitted after the stop would wait for workers forever: fail it too.
            self._cancel_pending(client)
            return []
        if not self._ready():
            return []
        hold = ""
        if self.budget is not None:
            hold = self._guard_budget(client, state)
            if self.exhausted:
                return []
        self._replace_preempted(client, now)
        raw = client.run_on_scheduler(scheduler_demand, target_duration=self.target_duration)
        demand = group_demand(self.engine.base_target, raw, self.target_duration)
        decisions = []
        for g in self.engine.base_target.groups:
            policy = self.policies.get(g.name)
            if policy is None:
                continue
            current = policy.clamp(state.scale.get(g.name, g.count))
            ceiling = None
            bounds = self.bounds if self.bounds and self.bounds.group == g.name else None
            if hold:
                ceiling = current
                wanted = policy.clamp(demand[g.name].workers)
                if wanted > current:
                    self._held(g.name, current, wanted, current, hold)
            elif bounds is not None:
                cap = bounds.cap(current, demand[g.name])
                ceiling = cap.workers
                wanted = policy.clamp(demand[g.name].workers)
                if wanted > max(current, ceiling):
                    self._held(g.name, current, wanted, ceiling, cap.reason)
            d = policy.decide(now, current, demand[g.name], ceiling)
            if d is not None:
                if bounds is not None and d.delta > 0 and d.after > bounds.workers:
                    d = Decision(d.group, d.before, d.after, f"+{d.delta}: {cap.reason}", at=d.at)
                decisions.append(d)
        if not decisions:
            return []
        result = self.engine.scale(
            {d.group: d.after for d in decisions}, {d.group: d.reason for d in decisions}
        )
        if result is None or result.errors:
            # Not carried out (nothing changed, or the apply failed): not a decision.
            if result is not None:
                log.warning("scaling failed: %s", "; ".join(result.errors))
            return []
        for d in decisions:
            log.info("%s: %d → %d (%s)", d.group, d.before, d.after, d.reason)
        self.decisions += decisions
        if self.budget is not None:
            self.budget.observe(self._budget_count())
        return decisions

    def _replace_preempted(self, client: Any, now: float) -> None:
        """A worker told it would go (spot notice, SIGTERM) is replaced now, not at the
        next ``apply``: once Dask has left it, a refreshed plan re-creates its resource."""
        events = client.get_events(PREEMPTION_TOPIC)
        for _, msg in events[len(self.preemptions) :]:
            self.preemptions.append(msg)
            name = str(msg.get("name") or msg.get("worker"))
            log.warning("worker %s preempted (%s); replacing it", name, msg.get("reason"))
            self._pending[name] = now
        self._pending = {n: t for n, t in self._pending.items() if now - t < REPLACE_WINDOW}
        if not self._pending or now - self._last_replan < REPLACE_EVERY:
            return
        self._last_replan = now
        with self.engine.locked("replace", 30.0):
            plan = self.engine.plan()
            if not any(c.action in ("create", "replace") for c in plan.changes):
                return  # the preempted worker is still there: look again shortly
            result = self.engine.execute(plan, wait=False)
        self.replacements += 1
        self._pending.clear()
        if result.errors:
            log.warning("replacing preempted workers was partial: %s", "; ".join(result.errors))

    def _budget_count(self) -> int:
        """The budgeted group's workers as asked for, for the spend: those its resources
        in state hold (recorded before each provider call, so a pending instance bills)."""
        assert self.budget is not None
        state = self.engine.store.read()
        if state is None or self.engine.workers_stopped:
            return 0
        return sum(len(r.worker_names) for r in state.resources
                   if r.group == self.budget.group)

    def _guard_budget(self, client: Any, state: Any) -> str:
        """Track the spend; warn, hold or stop. Returns a hold reason ("" = none)."""
        assert self.budget is not None
        b = self.budget
        count = self._budget_count()
        b.observe(count)
        level, spent = b.level(count)
        share = f"{spent / b.budget_usd:.0%}"
        if level in ("warn", "hold", "stop") and not b.warned:
            b.warned = True
            self.engine.record(
                BudgetAction(
                    BUDGET_WARNING,
                    b.budget_usd,
                    spent,
                    f"{share} of the budget spent ({spent:.4g} of {b.budget_usd:g} USD)",
                )
            )
        if level == "stop":
            self._exhaust(client, spent)
            return ""
        if level == "hold":
            return (
                f"the budget is {share} spent ({spent:.4g} of {b.budget_usd:g} USD): "
                "no scale-up past 90%"
            )
        return ""

    def _cancel_pending(self, client: Any) -> None:
        try:
            client.run_on_scheduler(cancel_everything, message=self._stop_message)
        except Exception as exc:  # the retire still goes ahead; the next step retries
            log.warning("could not cancel the pending work: %s", exc)

    def _exhaust(self, client: Any, spent: float) -> None:
        """The budget is spent: cancel the pending work, retire the workers (or destroy)."""
        assert self.budget is not None
        b = self.budget
        self.exhausted = b.exhausted = True
        self.engine.record(
            BudgetAction(
                BUDGET_EXHAUSTED,
                b.budget_usd,
                spent,
                f"the next {self.interval:g} s would pass the budget "
                f"({spent:.4g} of {b.budget_usd:g} USD spent); "
                + (
                    "destroying the target"
                    if b.on_budget == "destroy"
                    else "cancelling the pending work and retiring the workers"
                ),
                on_budget=b.on_budget,
            )
        )
        log.warning("budget exhausted: %.4g of %.4g USD spent", spent, b.budget_usd)
        self._stop_message = cancel_message(b.budget_usd, spent)
        self._cancel_pending(client)
        result: ApplyResult | None
        if b.on_budget == "destroy":
            result = self.engine.destroy_all()
            self.finished = not result.errors  # nothing left to guard
        else:
            result = self.engine.stop_workers()
        if result is not None and result.errors:
            log.warning("budget stop was partial: %s", "; ".join(result.errors))

    def _held(self, group: str, current: int, wanted: int, allowed: int, why: str) -> None:
        """Record once (per group and allowed count) that a scale-up was held back."""
        if any(b[0] == group and b[2] == allowed for b in self.blocked):
            return
        reason = f"adaptive asks for {wanted}; held at {allowed}: {why}"
        self.blocked.append((group, wanted, allowed, reason))
        log.info("%s: %s", group, reason)
        self.engine.record(ScaleBlocked(group, current, wanted, allowed, reason))

    def run(self, client: Any, stop: threading.Event | None = None) -> None:
        stop = stop or self._stop
        while not stop.is_set() and not self.finished:
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
