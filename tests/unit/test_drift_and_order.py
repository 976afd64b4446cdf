"""Attribute drift in the planner, and the engine's order of creates, updates and deletes."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalable.engine import update_order
from scalable.manifest import parse_manifest
from scalable.planning.diff import make_plan
from scalable.planning.model import Change
from scalable.planning.render import render_plan
from scalable.pricing.estimator import Price
from scalable.providers.base import (
    CreateContext,
    Created,
    Discovered,
    Observation,
    Provider,
    ResourceSpec,
)
from scalable.spec import build_target
from scalable.state.model import ResourceRecord, StateFile


class PoolProvider(Provider):
    """One pool whose size the manifest sets and the world may change."""

    name = "pools"
    observed: dict[str, Any] = {}

    def desired(self) -> list[ResourceSpec]:
        return [ResourceSpec("pool", "t.pool", {"size": self.target.groups[0].count,
                                                "kind": "big"})]

    def updatable(self, before: dict[str, Any], after: dict[str, Any]) -> bool:
        return {k for k in after if before.get(k) != after.get(k)} == {"size"}

    def price(self, resource: ResourceSpec) -> Price:
        return Price(hourly=0.1 * resource.attributes["size"], source="test")

    def observe(self, records: Sequence[ResourceRecord]) -> dict[str, Observation]:
        return {r.address: Observation("alive", attributes=dict(self.observed))
                for r in records}

    def discover(self, lineage: str) -> list[Discovered]:
        return []

    def create(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        raise NotImplementedError

    def delete(self, record: ResourceRecord) -> None:
        raise NotImplementedError


def _provider(size: int, observed: dict[str, Any]) -> PoolProvider:
    text = textwrap.dedent(f"""
        targets:
          t: {{provider: local, max_workers: {size}}}
        """)
    spec = build_target(parse_manifest(text, Path("/p/scalable.yaml")), "t")
    p = PoolProvider(spec, Path("/p/.scalable/t"))
    p.observed = observed
    return p


def _state(size: int) -> StateFile:
    st = StateFile(target="t", provider="local", serial=2, lineage="l-1")
    st.resources.append(ResourceRecord("pool", "t.pool", "ready", "k", id="p-1",
                                       attributes={"size": size, "kind": "big"}))
    return st


def test_a_size_changed_outside_is_drift_planned_back() -> None:
    plan = make_plan(_provider(5, {"size": 2}), _state(5), "d")
    assert [(d.kind, d.reason) for d in plan.drift] == [("changed", "size: 5 → 2")]
    (change,) = plan.changes
    assert change.action == "update" and change.reasons == ["size: 2 → 5"]
    assert change.hourly_before == 0.2 and plan.cost.hourly_now == 0.2
    assert "# pool (t.pool) was changed: size: 5 → 2" in render_plan(plan)


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
