"""When to change a group's worker count: up at once, down slowly, never thrashing.

Pure logic over readings, so it is tested without a cluster:
- scale-up acts on the first reading that asks for more;
- scale-down needs ``wait_count`` consecutive readings asking for less, outside the
  ``cooldown`` since the last change, and removes at most ``max_scale_down_fraction`` of
  the workers per step;
- the current count is what was *requested* (pending capacity included), so capacity on
  its way is never requested again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scalable.manifest.schema import Adaptive


@dataclass(frozen=True)
class Demand:
    """What the scheduler says one group needs now."""

    tasks: int  # queued + processing + waiting for a worker
    work_seconds: float  # their expected run time, summed
    workers: int  # workers that work would keep busy for target_duration

    def per_worker(self, workers: int) -> float:
        return self.work_seconds / max(workers, 1)


@dataclass(frozen=True)
class Decision:
    group: str
    before: int
    after: int
    reason: str
    at: float = 0.0  # the reading's monotonic time

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass
class AdaptivePolicy:
    group: str
    cfg: Adaptive
    low_readings: int = 0
    last_change: float = field(default=-math.inf)

    def clamp(self, n: int) -> int:
        return self.cfg.clamp(n)

    def decide(
        self, now: float, current: int, demand: Demand, ceiling: int | None = None
    ) -> Decision | None:
        """``ceiling``: a bound on growth from elsewhere (objectives), at least ``current``."""
        want = self.clamp(demand.workers)
        if ceiling is not None and want > current:
            want = max(current, min(want, ceiling))
        if want > current:
            self.low_readings = 0
            self.last_change = now
            capped = demand.workers > self.cfg.maximum
            reason = (
                f"+{want - current}: {demand.tasks} queued tasks ≈ "
                f"{demand.per_worker(current):.0f} s of work per worker > target "
                f"{self.cfg.target_duration:g} s"
                + (f" (capped at maximum {self.cfg.maximum})" if capped else "")
            )
            return Decision(self.group, current, want, reason, at=now)
        if want == current:
            self.low_readings = 0
            return None
        self.low_readings += 1
        if self.low_readings < self.cfg.wait_count:
            return None
        if now - self.last_change < self.cfg.cooldown:
            return None
        step = max(1, math.floor(current * self.cfg.max_scale_down_fraction))
        after = max(want, current - step)
        self.low_readings = 0
        self.last_change = now
        if demand.tasks == 0:
            load = "idle"
        else:
            load = f"{demand.tasks} tasks ≈ {demand.per_worker(current):.1f} s of work per worker"
        reason = (
            f"-{current - after}: {load} for {self.cfg.wait_count} readings "
            f"(needs {want}; at most {self.cfg.max_scale_down_fraction:.0%} removed per step)"
        )
        return Decision(self.group, current, after, reason, at=now)
