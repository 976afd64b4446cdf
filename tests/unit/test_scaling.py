"""Scaling decisions and objective planning, against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from scalable.manifest.schema import Adaptive, Objectives
from scalable.scaling.bounds import ObjectiveBounds
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


# -- the distribution, not the median (issue 19) ------------------------------------------


def skewed(n: int = 400, seed: int = 3) -> tuple[float, ...]:
    import random

    rng = random.Random(seed)
    return tuple(sorted(rng.lognormvariate(math.log(0.24), 0.87) for _ in range(n)))


def est_from(samples: tuple[float, ...], tasks: int) -> WorkloadEstimate:
    import statistics

    return WorkloadEstimate(tasks, statistics.fmean(samples), samples[int(0.9 * len(samples))],
                            0.0, "test", samples=samples)


def greedy(samples: tuple[float, ...], tasks: int, slots: int, reps: int = 300) -> float:
    """Mean makespan of ``tasks`` draws run in order on ``slots`` threads."""
    import heapq
    import random

    rng = random.Random(7)
    total = 0.0
    for _ in range(reps):
        free = [0.0] * min(slots, tasks)
        for _ in range(tasks):
            heapq.heappush(free, heapq.heappop(free) + rng.choice(samples))
        total += max(free)
    return total / reps


def test_total_work_is_the_mean_not_the_median() -> None:
    s = skewed()
    est = est_from(s, 80)
    assert est.task_seconds > 1.3 * est.median  # the skew the median hides
    # One slot: the tasks run one after another, the sum of their times.
    one = finish_seconds(1, est, threads=1, startup=2.0)
    assert one == pytest.approx(2.0 + 80 * est.task_seconds)


def test_last_wave_is_the_tail() -> None:
    s = skewed()
    est = est_from(s, 4)
    # Four tasks on four slots: the slowest of four, well above the mean.
    assert est.expected_max(1) == pytest.approx(est.task_seconds)
    assert finish_seconds(4, est, threads=1, startup=0.0) == pytest.approx(est.expected_max(4))
    assert est.expected_max(4) > 1.5 * est.task_seconds


@pytest.mark.parametrize("tasks,slots", [(80, 2), (80, 4), (80, 8), (300, 16), (20, 4)])
def test_expected_finish_matches_a_simulation_of_greedy_scheduling(tasks: int,
                                                                   slots: int) -> None:
    s = skewed()
    est = est_from(s, tasks)
    assert finish_seconds(slots, est, threads=1, startup=0.0) == pytest.approx(
        greedy(s, tasks, slots), rel=0.06)


def test_plan_says_the_spread() -> None:
    est = est_from(skewed(), 80)
    plan = choose(est, Objectives(deadline_hours=1.0), threads=1, startup=1.0,
                  hourly_per_worker=1.0, max_workers=8)
    o = plan.chosen
    assert o.finish_low < o.finish_seconds < o.finish_high
    assert "90% range" in plan.spread() and "90% RANGE" in plan.table()
    assert "mean" in plan.table() and "median" in plan.table()


def test_cost_counts_everything_billed() -> None:
    plan = choose(EST, Objectives(deadline_hours=1.0), threads=1, startup=3.0,
                  hourly_per_worker=0.10, hourly_fixed=0.50, max_workers=40)
    o = plan.chosen
    assert o.cost_usd == pytest.approx((o.workers * 0.10 + 0.50) * o.finish_seconds / 3600)


def test_budget_with_an_unknown_scheduler_price_is_an_error() -> None:
    with pytest.raises(ObjectiveInfeasible, match="scheduler"):
        choose(EST, Objectives(budget_usd=5), threads=1, startup=0.0,
               hourly_per_worker=1.0, hourly_fixed=None, max_workers=4)


def test_objective_table_and_plan_cost_block_agree(tmp_path: Path) -> None:
    """Issue 18/19: $3600/h per resource, budget $20, 10 tasks — the objective's cost is
    the plan's cost over the same horizon (the scheduler billed in both)."""
    from scalable.workspace import Workspace

    (tmp_path / "scalable.yaml").write_text(
        "project: {name: cost}\n"
        "targets:\n"
        "  local:\n"
        "    provider: local\n"
        "    max_workers: 8\n"
        "    pricing: {hourly_usd: 3600}\n"
        "    workload: {tasks: 10, task_seconds: 1}\n"
    )
    ws = Workspace.open(str(tmp_path / "scalable.yaml"), "local")
    engine = ws.engine()
    startup = ws.provider.startup_seconds()
    cheapest = min((w * 3600 + 3600) * (startup + math.ceil(10 / w)) / 3600
                   for w in range(1, 9))
    with pytest.raises(ObjectiveInfeasible, match="nothing fits within") as info:
        engine.plan_objectives(Objectives(budget_usd=cheapest - 0.5))
    assert f"${cheapest:,.2f}" in str(info.value)  # the cheapest, scheduler billed
    goal = engine.plan_objectives(Objectives(budget_usd=cheapest + 0.5))
    plan = engine.plan(refresh=False)
    assert goal.hourly_fixed == pytest.approx(3600.0)  # the scheduler
    assert plan.cost.horizon_total == pytest.approx(goal.chosen.cost_usd)
    assert goal.chosen.cost_usd == pytest.approx(cheapest)


# -- objectives bound adaptive --------------------------------------------------------------


def bounds(**kw: object) -> ObjectiveBounds:
    base: dict[str, object] = {"group": "default", "workers": 1, "threads": 1, "ceiling": 4,
                               "startup": 5.0, "deadline_at": 100.0}
    return ObjectiveBounds(**{**base, **kw})  # type: ignore[arg-type]


def test_on_track_holds_at_the_objective_count() -> None:
    cap = bounds().cap(1, demand(4, tasks=40, work=30.0), now=60.0)  # 30 s of work, 40 s left
    assert cap.workers == 1 and not cap.at_risk and "on track" in cap.reason


def test_a_deadline_that_will_be_missed_scales_up_within_the_ceiling() -> None:
    # 80 s of work, 40 s left, new workers work 35 s: 1 + ceil((80 − 40) / 35) = 3.
    cap = bounds().cap(1, demand(4, tasks=80, work=80.0), now=60.0)
    assert cap.workers == 3 and cap.at_risk
    # Needing more than the budget allows: the ceiling, and it says so.
    cap = bounds(ceiling=2).cap(1, demand(4, tasks=80, work=80.0), now=60.0)
    assert cap.workers == 2 and "allow 2" in cap.reason
    # Too late for new workers to help.
    cap = bounds().cap(1, demand(4, tasks=80, work=80.0), now=97.0)
    assert cap.workers == 1 and "too late" in cap.reason


def test_bounds_never_force_a_shrink() -> None:
    assert bounds().cap(3, demand(4, tasks=3, work=1.0), now=0.0).workers == 3


def test_policy_ceiling_turns_a_scale_up_into_nothing() -> None:
    p = policy()
    assert p.decide(0.0, 2, demand(8), ceiling=2) is None
    d = p.decide(1.0, 2, demand(8), ceiling=5)
    assert d is not None and d.after == 5


# -- the budget guard ----------------------------------------------------------------------


def test_spend_is_price_times_time_asked_for() -> None:
    from scalable.scaling.budget import BudgetGuard

    g = BudgetGuard("default", budget_usd=100.0, hourly_per_worker=3600.0, hourly_fixed=3600.0,
                    asked_at=0.0, interval=1.0)
    g.observe(1, 0.0)  # 1 worker + the scheduler: $2/s
    g.observe(3, 10.0)  # 3 workers + the scheduler: $4/s
    assert g.spent(10.0) == pytest.approx(20.0)
    assert g.spent(15.0) == pytest.approx(40.0)
    assert g.level(3, 15.0)[0] == "ok"
    assert g.level(3, 20.0)[0] == "ok"  # $60; 80% ($80) comes at 25 s
    assert g.level(3, 25.0)[0] == "warn"  # $80
    assert g.level(3, 27.6)[0] == "hold"  # $90.4
    # "stop" one interval ahead: $95 now + $4 next second < 100 → hold; $97 + 4 ≥ 100.
    assert g.level(3, 28.75)[0] == "hold"
    assert g.level(3, 29.25)[0] == "stop"


def test_budget_exhausted_names_budget_and_spend() -> None:
    from scalable.scaling.budget import BudgetExhausted, cancel_message

    exc = BudgetExhausted.from_message(cancel_message(50.0, 49.5))
    assert exc is not None and exc.budget_usd == 50.0 and exc.spent_usd == 49.5
    assert "$49.50 of $50.00" in str(exc)
    assert BudgetExhausted.from_message("cancelled by the user") is None
