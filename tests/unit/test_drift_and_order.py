"""Attribute drift in the planner, and the engine's order of creates, updates and deletes."""

from __future__ import annotations

from typing import Any

from scalable.planning import diff
from scalable.planning.model import Change, Plan
from scalable.planning.render import render_plan
from scalable.planning.steps import update_order
from scalable.state.model import ResourceRecord, StateFile

from tests.fakes.provider import FakeProvider, fake_provider


def _provider(size: int, observed: dict[str, Any]) -> FakeProvider:
    """Scheduler, a pool of ``size`` and ``size`` workers; the world reports ``observed``."""
    p = fake_provider(size, pools=True, hourly=0.0)
    p.world.drifted["node_pool.default"] = observed
    return p


def _state(size: int) -> StateFile:
    st = StateFile(target="t", provider="local", serial=2, lineage="l-1")
    st.resources.append(ResourceRecord("scheduler", "t.vm", "ready", "k-s", id="s-1",
                                       attributes={"size": "s"}))
    st.resources.append(ResourceRecord("node_pool.default", "t.pool", "ready", "k", id="p-1",
                                       attributes={"size": size}))
    for i in range(size):
        st.resources.append(ResourceRecord(f"workers.default[{i}]", "t.vm", "ready", f"k-{i}",
                                           id=f"w-{i}", group="default",
                                           attributes={"threads": 1}))
    return st


def make_plan(p: FakeProvider, st: StateFile, digest: str) -> Plan:
    p.world.seed(st)
    return diff.make_plan(p, st, digest)


def test_a_size_changed_outside_is_drift_planned_back() -> None:
    plan = make_plan(_provider(5, {"size": 2}), _state(5), "d")
    assert [(d.kind, d.reason) for d in plan.drift] == [("changed", "size: 5 → 2")]
    (change,) = plan.actionable
    assert change.address == "node_pool.default"
    assert change.action == "update" and [str(r) for r in change.reasons] == ["size: 2 → 5"]
    assert change.hourly_before == 0.2 and plan.cost.hourly_now == 0.2
    assert "# node_pool.default (t.pool) was changed: size: 5 → 2" in render_plan(plan)


def test_observed_values_equal_to_the_record_are_no_drift() -> None:
    plan = make_plan(_provider(5, {"size": 5}), _state(5), "d")
    assert plan.drift == [] and not plan.has_changes
    plan = make_plan(_provider(5, {}), _state(5), "d")  # a provider that cannot tell
    assert plan.drift == [] and not plan.has_changes


def test_updates_grow_what_others_need_first_and_shrink_it_last() -> None:
    deps = {"scheduler": {"node_pool.default"},
            "workers.default": {"scheduler", "node_pool.default"},
            "node_pool.default": set()}

    def change(address: str, before: float, after: float) -> Change:
        return Change(address, "update", "t", hourly_before=before, hourly_after=after)

    def order(changes: list[Change]) -> list[str]:
        return [c.address for c in sorted(changes, key=lambda c: update_order(c, deps))]

    grow = [change("workers.default", 0, 0), change("node_pool.default", 0.1, 0.3)]
    assert order(grow) == ["node_pool.default", "workers.default"]
    shrink = [change("node_pool.default", 0.3, 0.1), change("workers.default", 0, 0)]
    assert order(shrink) == ["workers.default", "node_pool.default"]
    # The scheduler (needed by the workers) changes before them at an unchanged price.
    assert order([change("workers.default", 0, 0), change("scheduler", 0, 0)]) == [
        "scheduler", "workers.default"]
