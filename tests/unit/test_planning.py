"""The planner and its rendering, over an in-memory provider (unit tests of one function)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scalable.errors import PlanError
from scalable.planning import diff
from scalable.planning.model import Plan
from scalable.planning.planfile import check_fresh, load_plan, save_plan
from scalable.planning.render import render_plan
from scalable.providers.base import Observation
from scalable.state.model import ResourceRecord, StateFile

from tests.fakes.provider import FakeProvider, Thing, fake_provider

GOLDEN = Path(__file__).parent / "golden"


def provider(workers: int, threads: int = 1) -> FakeProvider:
    return fake_provider(workers, threads=threads)


def make_plan(p: FakeProvider, st: StateFile | None, digest: str, **kw: Any) -> Plan:
    """The planner over a world in which ``st``'s records exist."""
    if st is not None:
        p.world.seed(st)
    return diff.make_plan(p, st, digest, **kw)


def state_with(workers: int, threads: int = 1) -> StateFile:
    st = StateFile(target="t", provider="local", serial=3, lineage="l-1")
    st.resources.append(ResourceRecord("scheduler", "t.vm", "ready", "k-s", id="vm-s",
                                       attributes={"size": "s"}))
    for i in range(workers):
        st.resources.append(ResourceRecord(f"workers.default[{i}]", "t.vm", "ready", f"k-{i}",
                                           id=f"vm-{i}", group="default",
                                           attributes={"threads": threads}))
    return st


def actions(plan: Plan) -> dict[str, str]:
    return {c.address: c.action for c in plan.changes}


def test_first_plan_creates_everything_with_costs() -> None:
    plan = make_plan(provider(2), None, "d")
    assert actions(plan) == {"scheduler": "create", "workers.default[0]": "create",
                             "workers.default[1]": "create"}
    assert plan.counts == {"add": 3, "change": 0, "destroy": 0}
    assert plan.cost.hourly_now == 0 and plan.cost.hourly_after == pytest.approx(1.5)
    assert plan.cost.horizon_total == pytest.approx(3.0)
    assert plan.lineage is None


def test_grow_then_shrink() -> None:
    grow = make_plan(provider(6), state_with(4), "d")
    assert [a for a in actions(grow).values() if a != "no-op"] == ["create", "create"]
    assert grow.counts["add"] == 2
    shrink = make_plan(provider(2), state_with(6), "d")
    deleted = [c.address for c in shrink.changes if c.action == "delete"]
    assert deleted == [f"workers.default[{i}]" for i in range(2, 6)]
    assert "group default: 6 → 2 resources" in str(shrink.changes[-1].reasons[0])
    assert shrink.cost.hourly_delta == pytest.approx(-2.0)


def test_attribute_change_replaces() -> None:
    plan = make_plan(provider(1, threads=4), state_with(1, threads=1), "d")
    (c,) = [c for c in plan.changes if c.address == "workers.default[0]"]
    assert c.action == "replace" and "threads: 1 → 4" in str(c.reasons[0])


def test_gone_worker_is_drift_and_recreated() -> None:
    p = provider(2)
    p.world.observed["workers.default[1]"] = Observation("gone", "process 123 exited")
    plan = make_plan(p, state_with(2), "d")
    assert [(d.address, d.kind) for d in plan.drift] == [("workers.default[1]", "gone")]
    assert actions(plan)["workers.default[1]"] == "create"
    assert plan.cost.hourly_now == pytest.approx(1.0)  # the gone one costs nothing now


def test_gone_scheduler_replaces_workers() -> None:
    p = provider(2)
    p.world.observed["scheduler"] = Observation("gone", "process 1 exited")
    plan = make_plan(p, state_with(2), "d")
    assert actions(plan) == {"scheduler": "create", "workers.default[0]": "replace",
                             "workers.default[1]": "replace"}


def test_pending_is_not_drift_to_fix() -> None:
    p = provider(1)
    p.world.observed["workers.default[0]"] = Observation("pending", "Resources")
    plan = make_plan(p, state_with(1), "d")
    assert not plan.actionable
    assert [d.kind for d in plan.drift] == ["pending"]


def test_creating_record_is_adopted_when_discovered() -> None:
    st = state_with(1)
    st.resources[1].status = "creating"
    st.resources[1].id = None
    p = provider(1)
    p.world.observed["workers.default[0]"] = Observation("gone", "no id")
    p.world.things["vm-new"] = Thing("vm-new", "workers.default[0]", "t.vm", "l-1", "k-0", {})
    plan = make_plan(p, st, "d")
    assert not plan.actionable
    assert [r.id for r in plan.adopted] == ["vm-new"]
    assert plan.has_changes  # adoption must be written by apply


def test_creating_record_never_created_is_recreated() -> None:
    st = state_with(1)
    st.resources[1].status = "creating"
    plan = make_plan(provider(1), st, "d")
    assert actions(plan)["workers.default[0]"] == "create"


def test_orphans_are_deleted() -> None:
    p = provider(1)
    p.world.things["vm-x"] = Thing("vm-x", "workers.default[9]", "t.vm", "l-1", "k-unknown", {})
    plan = make_plan(p, state_with(1), "d")
    (c,) = plan.actionable
    assert (c.address, c.action) == ("workers.default[9]", "delete")
    assert "orphan" in str(c.reasons[0])


def test_destroy_plans_every_delete() -> None:
    plan = make_plan(provider(2), state_with(2), "d", destroy=True)
    assert set(actions(plan).values()) == {"delete"} and plan.counts["destroy"] == 3
    assert plan.cost.hourly_after == 0


def test_unknown_price_is_never_zero() -> None:
    p = provider(2)
    p.hourly = None
    plan = make_plan(p, None, "d")
    assert plan.cost.hourly_after is None
    assert len(plan.cost.unknown) == 2
    text = render_plan(plan)
    assert "unknown" in text and "2 price(s) unknown (not counted as $0)" in text


def test_no_refresh_trusts_state() -> None:
    p = provider(1)
    p.world.observed["workers.default[0]"] = Observation("gone", "x")
    plan = make_plan(p, state_with(1), "d", refresh=False)
    assert not plan.actionable


def test_render_matches_golden() -> None:
    p = provider(3)
    p.world.observed["workers.default[0]"] = Observation("gone", "process 4242 exited")
    plan = make_plan(p, state_with(2), "d")
    text = render_plan(plan)
    golden = GOLDEN / "plan_grow_with_drift.txt"
    if not golden.exists():  # first run writes it; review it by eye, then commit
        golden.write_text(text)
    assert text == golden.read_text()


def test_no_changes_wording() -> None:
    text = render_plan(make_plan(provider(1), state_with(1), "d"))
    assert text.startswith("No changes. Capacity matches the manifest.")


def test_json_document_shape() -> None:
    doc = make_plan(provider(1), None, "d").to_dict(detail=False)
    assert doc["format_version"] == "1.2"
    assert {"resource_changes", "resource_drift", "summary", "cost"} <= set(doc)
    assert doc["resource_changes"][0]["action"] == "create"
    assert "resource" not in doc["resource_changes"][0]


def test_saved_plan_roundtrip_and_staleness(tmp_path: Path) -> None:
    st = state_with(1)
    plan = make_plan(provider(2), st, "digest-1")
    path = tmp_path / "p.plan"
    save_plan(plan, path)
    loaded = load_plan(path)
    assert actions(loaded) == actions(plan)
    assert loaded.changes[-1].resource == plan.changes[-1].resource
    check_fresh(loaded, st, "digest-1", "t")
    with pytest.raises(PlanError, match="manifest changed"):
        check_fresh(loaded, st, "digest-2", "t")
    st.serial += 1
    with pytest.raises(PlanError, match="Saved plan is stale"):
        check_fresh(loaded, st, "digest-1", "t")
    other = StateFile(target="t", provider="local", serial=3)
    with pytest.raises(PlanError, match="does not match"):
        check_fresh(loaded, other, "digest-1", "t")
    (tmp_path / "junk").write_text("{}")
    with pytest.raises(PlanError, match="not a saved plan"):
        load_plan(tmp_path / "junk")


@pytest.mark.parametrize("objective, why", [
    ({"workers": 2}, "group None"),
    ({"group": "default", "workers": "2"}, "workers '2'"),
    ({"group": "default", "workers": 2, "budget_usd": "lots"}, "budget_usd 'lots'"),
])
def test_a_saved_plans_objective_is_checked_when_loaded(
        tmp_path: Path, objective: dict[str, object], why: str) -> None:
    plan = make_plan(provider(2), state_with(1), "digest-1")
    plan.objective = {"group": "default", "workers": 2, "budget_usd": 150.0}
    path = tmp_path / "p.plan"
    save_plan(plan, path)
    assert load_plan(path).objective == plan.objective  # a good one comes back whole
    body = json.loads(path.read_text())
    body["objective"] = objective
    path.write_text(json.dumps(body))
    with pytest.raises(PlanError, match=f"key objective: .*{why}"):
        load_plan(path)


INSTANCE_TYPES = """
version: 1
project: {name: demo}
targets:
  cloud:
    provider: aws
    region: us-east-1
    instance_type: m5.large
    groups:
      burst:
        max_workers: 2
        instance_types: [c5.2xlarge, c5.xlarge, m5.4xlarge]
"""


def test_plan_prices_the_first_instance_type_and_shows_the_range(tmp_path: Path) -> None:
    """EC2 failover alternatives: the plan counts the first choice and shows the range
    (best and worst case) in words and in --json (golden files; no AWS call)."""
    import json

    from scalable.workspace import Workspace

    (tmp_path / "scalable.yaml").write_text(INSTANCE_TYPES)
    ws = Workspace.open(tmp_path / "scalable.yaml", "cloud")
    plan = diff.make_plan(ws.provider, None, "d", refresh=False, horizon_hours=2.0)
    cost = plan.cost
    assert cost.hourly_after is not None and cost.hourly_after_max is not None
    assert cost.hourly_after_min is not None
    # Two workers on c5.2xlarge are counted; the worst case puts both on m5.4xlarge.
    assert cost.hourly_after_min < cost.hourly_after < cost.hourly_after_max
    text = render_plan(plan)
    block = text[text.index("Cost estimate:"):]
    doc = plan.to_dict(detail=False)["cost"]
    for name, got in (("plan_instance_types.txt", block),
                      ("plan_instance_types.json", json.dumps(doc, indent=2) + "\n")):
        golden = GOLDEN / name
        if not golden.exists():  # first run writes it; review it by eye, then commit
            golden.write_text(got)
        assert got == golden.read_text()
    assert doc["ranges"] == [{"group": "burst", "resources": 2, "choices": [
        {"name": "c5.2xlarge", "hourly": 0.34}, {"name": "c5.xlarge", "hourly": 0.17},
        {"name": "m5.4xlarge", "hourly": 0.768}]}]
    assert doc["horizon_total_max"] == pytest.approx(2 * doc["hourly_after_max"])


def test_plan_without_alternatives_has_no_range() -> None:
    doc = make_plan(provider(2), None, "d").to_dict(detail=False)["cost"]
    assert doc["ranges"] == [] and doc["hourly_after_max"] is None
    assert "fallback" not in render_plan(make_plan(provider(2), None, "d"))
