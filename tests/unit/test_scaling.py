"""Scaling decisions and objective planning, against hand-computed values."""

from __future__ import annotations

import math

import pytest
from scalable.manifest.schema import Adaptive, Objectives
from scalable.scaling.objectives import (
    ObjectiveInfeasible,
    WorkloadEstimate,
    choose,
    finish_seconds,
)
from scalable.scaling.policy import AdaptivePolicy, Demand


def policy(**kw: object) -> AdaptivePolicy:
    cfg = Adaptive(**{"minimum": 1, "maximum": 10, "cooldown": 30, "wait_count": 3,
                      "max_scale_down_fraction": 0.5, **kw})  # type: ignore[arg-type]
    return AdaptivePolicy("default", cfg)


def demand(workers: int, tasks: int = 100, work: float = 500.0) -> Demand:
    return Demand(tasks=tasks, work_seconds=work, workers=workers)


def test_scale_up_acts_at_once_and_is_capped() -> None:
    p = policy()
    d = p.decide(0.0, 1, demand(40, tasks=340, work=340.0))
    assert d is not None and (d.before, d.after) == (1, 10)
    assert d.reason == ("+9: 340 queued tasks ≈ 340 s of work per worker > target 5 s "
                        "(capped at maximum 10)")


def test_scale_down_waits_for_readings_and_cooldown() -> None:
    p = policy()
    assert p.decide(0.0, 1, demand(8)) is not None  # up at t=0
    idle = Demand(0, 0.0, 0)
    # Three low readings, but inside the 30 s cooldown: nothing.
    assert [p.decide(t, 8, idle) for t in (1.0, 2.0, 3.0, 4.0)] == [None] * 4
    # Past the cooldown, with ≥ wait_count low readings: at most half go at once.
    d = p.decide(31.0, 8, idle)
    assert d is not None and (d.before, d.after) == (8, 4)
    assert d.reason.startswith("-4: idle for 3 readings")
    # The next step needs wait_count fresh readings and another cooldown.
    assert [p.decide(t, 4, idle) for t in (32.0, 33.0, 34.0, 60.0)] == [None] * 4
    d = p.decide(61.0, 4, idle)
    assert d is not None and (d.before, d.after) == (4, 2)


def test_no_reversal_inside_cooldown_under_oscillating_load() -> None:
    p = policy(cooldown=10, wait_count=2)
    changes = []
    current = 1
    for t in range(60):  # load flips every 3 s between high and none
        high = (t // 3) % 2 == 0
        d = p.decide(float(t), current, demand(6) if high else Demand(0, 0.0, 0))
        if d is not None:
            changes.append((t, d.delta))
            current = d.after
    ups = [t for t, delta in changes if delta > 0]
    downs = [t for t, delta in changes if delta < 0]
    assert ups and downs
    for t_down in downs:  # every removal is at least a cooldown after the last add
        last_up = max(t for t in ups if t < t_down)
        assert t_down - last_up >= 10


def test_minimum_is_kept() -> None:
    p = policy(minimum=2, wait_count=1, cooldown=0)
    d = p.decide(100.0, 3, Demand(0, 0.0, 0))
    assert d is not None and d.after == 2
    assert p.decide(200.0, 2, Demand(0, 0.0, 0)) is None


EST = WorkloadEstimate(tasks=1000, task_seconds=30.0, task_seconds_p90=40.0,
                       serial_fraction=0.05, source="test")


def test_finish_time_is_amdahl_in_waves() -> None:
    # serial 0.05·1000·30 = 1500 s; 950 parallel tasks on 14·1 threads = 68 waves of 30 s.
    assert finish_seconds(14, EST, threads=1, startup=3.0) == 3 + 1500 + 68 * 30
    # Two threads per worker halve the waves (ceil(950/28) = 34).
    assert finish_seconds(14, EST, threads=2, startup=0.0) == 1500 + 34 * 30


def test_choose_cheapest_meeting_deadline_within_budget() -> None:
    plan = choose(EST, Objectives(deadline_hours=1.0, budget_usd=2.0), threads=1,
                  startup=3.0, hourly_per_worker=0.10, max_workers=40)
    # 13 workers: 3 + 1500 + 74·30 = 3723 s > 3600; 14: 3543 s ≤ 3600.
    assert plan.chosen.workers == 14
    assert plan.chosen.cost_usd == pytest.approx(14 * 0.10 * 3543 / 3600)
    assert "✔" in plan.table()


def test_budget_only_picks_fastest_affordable() -> None:
    plan = choose(EST, Objectives(budget_usd=1.5), threads=1, startup=0.0,
                  hourly_per_worker=0.10, max_workers=100)
    cost = lambda w: w * 0.10 * finish_seconds(w, EST, 1, 0.0) / 3600  # noqa: E731
    best = max(w for w in range(1, 101) if cost(w) <= 1.5)
    assert plan.chosen.workers == best


def test_never_more_workers_than_tasks_can_use() -> None:
    small = WorkloadEstimate(10, 60.0, 60.0, 0.0, "test")
    plan = choose(small, Objectives(deadline_hours=5), threads=2, startup=0.0,
                  hourly_per_worker=1.0, max_workers=1000)
    assert max(o.workers for o in plan.options) == math.ceil(10 / 2)


def test_infeasible_names_the_nearest_choices() -> None:
    with pytest.raises(ObjectiveInfeasible) as info:
        choose(EST, Objectives(deadline_hours=1.0, budget_usd=1.0), threads=1, startup=3.0,
               hourly_per_worker=0.10, max_workers=40)
    msg = str(info.value)
    assert msg.startswith("deadline needs ≥ 14 workers = $1.38 > budget $1.00; within $1.00:")
    # The fastest option within $1: the largest w with cost ≤ 1.
    within = [w for w in range(1, 41)
              if w * 0.10 * finish_seconds(w, EST, 1, 3.0) / 3600 <= 1.0]
    assert f"{max(within)} workers, finishes in" in msg


def test_unreachable_deadline() -> None:
    with pytest.raises(ObjectiveInfeasible, match="cannot be met: the fastest is 40 workers"):
        choose(EST, Objectives(deadline_hours=0.5), threads=1, startup=3.0,
               hourly_per_worker=0.10, max_workers=40)


def test_budget_needs_a_price() -> None:
    with pytest.raises(ObjectiveInfeasible, match="needs a price"):
        choose(EST, Objectives(budget_usd=5), threads=1, startup=0.0,
               hourly_per_worker=None, max_workers=4)
