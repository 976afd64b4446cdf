"""--replace, --only (Terraform's -target) and --refresh-only in the planner."""

from __future__ import annotations

import pytest
from scalable.errors import PlanError
from scalable.planning.model import Plan
from scalable.planning.planfile import load_plan, save_plan
from scalable.planning.render import render_plan
from scalable.providers.base import Observation

from tests.unit.test_planning import actions, make_plan, provider, state_with


def acting(plan: Plan) -> dict[str, str]:
    return {a: x for a, x in actions(plan).items() if x != "no-op"}


def test_replace_marks_exactly_that_resource() -> None:
    plan = make_plan(provider(3), state_with(3), "d", replace=["workers.default[1]"])
    assert acting(plan) == {"workers.default[1]": "replace"}
    text = render_plan(plan)
    assert '-/+ t.vm "workers.default[1]"' in text
    assert "must be replaced (as requested with --replace)" in text
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in text


def test_replace_a_group_and_the_scheduler() -> None:
    group = make_plan(provider(2), state_with(2), "d", replace=["workers.default"])
    assert acting(group) == {"workers.default[0]": "replace", "workers.default[1]": "replace"}
    # Workers cannot stay on a scheduler that is replaced: they come along, saying why.
    sched = make_plan(provider(2), state_with(2), "d", replace=["scheduler"])
    assert acting(sched) == {
        "scheduler": "replace",
        "workers.default[0]": "replace",
        "workers.default[1]": "replace",
    }
    assert "the scheduler is being replaced" in render_plan(sched)


@pytest.mark.parametrize(
    ("option", "addr", "words"),
    [
        ("replace", "workers.nope[0]", "Invalid --replace address 'workers.nope[0]': no resource"),
        ("replace", "workers[", "Invalid --replace address 'workers[': not a resource address"),
        ("targets", "workers.gpu", "Invalid --only address 'workers.gpu': no resource"),
    ],
)
def test_bad_addresses_are_refused(option: str, addr: str, words: str) -> None:
    with pytest.raises(PlanError, match=words.replace("[", r"\[")):
        make_plan(provider(2), state_with(2), "d", **{option: [addr]})


def test_incompatible_modes() -> None:
    with pytest.raises(PlanError, match="--refresh-only and --destroy are mutually"):
        make_plan(provider(1), state_with(1), "d", destroy=True, refresh_only=True)
    with pytest.raises(PlanError, match="Incompatible refresh options"):
        make_plan(provider(1), state_with(1), "d", refresh=False, refresh_only=True)
    with pytest.raises(PlanError, match="not allowed in refresh-only mode"):
        make_plan(provider(1), state_with(1), "d", refresh_only=True, replace=["scheduler"])


def test_only_keeps_the_target_and_warns() -> None:
    # 2 → 4 workers and one gone; target only the new [3].
    p = provider(4)
    p.world.observed["workers.default[0]"] = Observation("gone", "exited")
    plan = make_plan(p, state_with(2), "d", targets=["workers.default[3]"])
    assert acting(plan) == {"workers.default[3]": "create"}
    assert plan.targets == ["workers.default[3]"]
    text = render_plan(plan)
    assert text.startswith("Warning: Resource targeting is in effect")
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in text
    # The cost after counts only what the partial plan does.
    assert plan.cost.hourly_after == pytest.approx(plan.cost.hourly_now + 0.5)


def test_only_a_group_brings_the_scheduler_it_needs() -> None:
    plan = make_plan(provider(2), None, "d", targets=["workers.default"])
    assert acting(plan) == {
        "scheduler": "create",
        "workers.default[0]": "create",
        "workers.default[1]": "create",
    }


def test_only_the_scheduler_on_destroy_takes_its_workers() -> None:
    plan = make_plan(provider(2), state_with(2), "d", destroy=True, targets=["scheduler"])
    assert set(acting(plan)) == {"scheduler", "workers.default[0]", "workers.default[1]"}
    one = make_plan(provider(2), state_with(2), "d", destroy=True, targets=["workers.default[1]"])
    assert acting(one) == {"workers.default[1]": "delete"}


def test_refresh_only_records_drift_and_changes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = provider(4)  # the manifest wants more: refresh-only must not add any
    p.world.observed["workers.default[1]"] = Observation("gone", "process 9 exited")
    p.world.observed["workers.default[0]"] = Observation("alive", attributes={"threads": 8})
    plan = make_plan(p, state_with(2), "d", refresh_only=True)
    assert plan.actionable == [] and plan.has_changes
    assert plan.forget == ["workers.default[1]"]
    assert [(r.address, r.attributes) for r in plan.refreshed] == [
        ("workers.default[0]", {"threads": 8})
    ]
    text = render_plan(plan)
    assert "This is a refresh-only plan" in text
    assert "1 to update in state, 1 to forget, 0 to adopt" in text
    saved = tmp_path / "p.json"
    save_plan(plan, saved)
    back = load_plan(saved)
    assert back.refresh_only and back.forget == plan.forget
    assert back.refreshed[0].attributes == {"threads": 8}


def test_refresh_only_without_drift() -> None:
    plan = make_plan(provider(2), state_with(2), "d", refresh_only=True)
    assert not plan.has_changes
    assert "No changes. Your infrastructure still matches" in render_plan(plan)
