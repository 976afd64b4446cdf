"""A budget enforced while the run goes (issue 18).

With ``objectives.budget_usd`` the controller tracks the run's spend live — each
resource's hourly price (the prices ``plan`` showed: one group's workers, plus
everything else the target bills) × the time it has been asked for — from the moment
capacity was asked for. Billing starts at the request, not at registration: a cloud
bills a pending instance.

- at 80% of the budget: a ``budget_warning`` event (once);
- from 90%: no scale-up (a ``scale_blocked`` event says so, once);
- at 100% — judged one controller interval ahead, so the spend stays within one
  interval's cost of the budget — a ``budget_exhausted`` event, every unfinished task
  is cancelled with a message naming budget and spend (``ScalableClient.gather`` raises
  ``BudgetExhausted``), the workers are retired, and with ``on_budget: destroy`` the
  whole target is destroyed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from scalable.errors import ScalableError
from scalable.pricing.estimator import format_usd

WARN_AT = 0.8
HOLD_AT = 0.9
# The cancellation message starts with this, so a client can tell a budget stop.
MARKER = "scalable: budget exhausted"


class BudgetExhausted(ScalableError):
    """The run's budget is spent: its pending work was cancelled."""

    def __init__(self, budget_usd: float, spent_usd: float, detail: str = "") -> None:
        super().__init__(
            f"budget exhausted: spent {format_usd(spent_usd)} of {format_usd(budget_usd)}"
            + (f"; {detail}" if detail else ""),
            hint="raise objectives.budget_usd (or --budget-usd), or make the work smaller",
        )
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd

    @classmethod
    def from_message(cls, msg: str) -> BudgetExhausted | None:
        """Rebuild from a cancellation message (``MARKER budget=… spent=…``)."""
        if not msg.startswith(MARKER):
            return None
        fields = dict(p.split("=", 1) for p in msg[len(MARKER) :].split() if "=" in p)
        try:
            return cls(
                float(fields["budget"]), float(fields["spent"]), "the pending work was cancelled"
            )
        except (KeyError, ValueError):
            return None


def cancel_message(budget: float, spent: float) -> str:
    return f"{MARKER} budget={budget:.6f} spent={spent:.6f}"


def cancel_everything(dask_scheduler: Any, message: str) -> int:
    """Runs on the scheduler: cancel every unfinished task, for every client that wants
    it, with ``message`` (clients' futures raise ``FutureCancelledError(msg=message)``)."""
    s = dask_scheduler
    by_client: dict[str, list[Any]] = {}
    for key, ts in list(s.tasks.items()):
        if ts.state in ("memory", "erred", "forgotten"):
            continue
        for cs in ts.who_wants or ():
            by_client.setdefault(cs.client_key, []).append(key)
    n = 0
    for client, keys in by_client.items():
        s.stimulus_cancel(keys, client, force=True, reason="budget exhausted", msg=message)
        n += len(keys)
    return n


@dataclass
class BudgetGuard:
    group: str  # the group whose workers the controller scales (the rest is fixed)
    budget_usd: float
    hourly_per_worker: float
    hourly_fixed: float
    asked_at: float  # wall clock: billing starts here
    interval: float = 1.0
    on_budget: str = "stop"
    # (since, workers asked for) — the spend is the integral of the price over it.
    history: list[tuple[float, int]] = field(default_factory=list)
    warned: bool = False
    exhausted: bool = False

    def hourly(self, workers: int) -> float:
        return workers * self.hourly_per_worker + self.hourly_fixed

    def observe(self, workers: int, now: float | None = None) -> None:
        """Note the count asked for from ``now`` on."""
        now = time.time() if now is None else now
        if not self.history or self.history[-1][1] != workers:
            self.history.append((now, workers))

    def spent(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        total, points = 0.0, self.history or [(self.asked_at, 0)]
        start = self.asked_at
        count = points[0][1]
        for since, workers in points:
            if since > start:
                total += self.hourly(count) * (since - start) / 3600
                start = since
            count = workers
        return total + self.hourly(count) * max(0.0, now - start) / 3600

    def level(self, workers: int, now: float | None = None) -> tuple[str, float]:
        """("ok" | "warn" | "hold" | "stop", spent now). "stop" when the next interval
        would take the spend past the budget."""
        now = time.time() if now is None else now
        spent = self.spent(now)
        ahead = spent + self.hourly(workers) * self.interval / 3600
        if ahead >= self.budget_usd:
            return "stop", spent
        if spent >= HOLD_AT * self.budget_usd:
            return "hold", spent
        if spent >= WARN_AT * self.budget_usd:
            return "warn", spent
        return "ok", spent

    @classmethod
    def from_event(cls, data: dict[str, Any], asked_at: float) -> BudgetGuard | None:
        """From an ``objective_plan`` event (a detached controller's way in)."""
        budget, per, fixed = (
            data.get("budget_usd"),
            data.get("hourly_per_worker"),
            data.get("hourly_fixed"),
        )
        if budget is None or per is None or fixed is None:
            return None
        guard = cls(
            str(data["group"]),
            float(budget),
            float(per),
            float(fixed),
            asked_at=asked_at,
            on_budget=str(data.get("on_budget") or "stop"),
        )
        guard.observe(int(data["workers"]), asked_at)
        return guard
