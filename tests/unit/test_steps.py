"""The step graph (pure) and each outcome of the executor, over the fake provider."""

from __future__ import annotations

from pathlib import Path

from scalable.addrs import SCHEDULER
from scalable.engine import Engine
from scalable.planning.model import Change, Cost, Plan
from scalable.planning.steps import Blocked, Hold, Step, hold, step_graph
from scalable.providers.base import ResourceSpec
from scalable.state.model import StateFile
from scalable.state.store import LocalStore

from tests.fakes.provider import FakeProvider, fake_provider


def _engine(tmp_path: Path, p: FakeProvider) -> Engine:
    return Engine(p, LocalStore(tmp_path / ".scalable" / "t"))


def _apply(engine: Engine, *, destroy: bool = False) -> list[str]:
    return engine.execute(engine.plan(destroy=destroy), wait=False).errors


def _change(address: str, action: str, *deps: str) -> Change:
    spec = ResourceSpec(address, "t.vm", {}, depends_on=deps)
    return Change(address, action, "t.vm", resource=spec)  # type: ignore[arg-type]


# -- the graph ------------------------------------------------------------------------------


def test_graph_orders_deletes_down_creates_up_and_names_blockers() -> None:
    st = StateFile(target="t", provider="fake")
    changes = [
        _change("workers.a[0]", "delete", SCHEDULER, "node_pool.a"),
        _change(SCHEDULER, "delete"),
        _change("node_pool.a", "delete"),
        _change("workers.b[0]", "create", SCHEDULER, "node_pool.b"),
        _change("node_pool.b", "create"),
        _change("no-op", "no-op"),
    ]
    steps = step_graph(st, changes)
    # What the scheduler does not need waits for it (the engine's old rule).
    assert [(s.op, s.address) for s in steps] == [
        ("delete", "workers.a[0]"),
        ("delete", "node_pool.a"),
        ("delete", SCHEDULER),
        ("create", "node_pool.b"),
        ("create", "workers.b[0]"),
    ]
    by = {(s.op, s.address): s for s in steps}
    # A delete is blocked by what uses it; a create by what it needs.
    assert by[("delete", SCHEDULER)].blocked_by == {"workers.a[0]", "node_pool.a"}
    assert by[("delete", "node_pool.a")].blocked_by == {"workers.a[0]"}
    assert by[("create", "workers.b[0]")].blocked_by == {SCHEDULER, "node_pool.b"}
    assert by[("create", "node_pool.b")].wave < by[("create", "workers.b[0]")].wave
    assert ("create", "no-op") not in by


def test_hold_says_why() -> None:
    delete = Step("delete", _change(SCHEDULER, "delete"), 0, frozenset({"workers.a[0]"}))
    assert hold(delete, set()) is None
    h = hold(delete, {"workers.a[0]"})
    assert h == Hold(Blocked.USED_BY_UNDELETED, ("workers.a[0]",))
    assert h.words(SCHEDULER) == (
        "scheduler: not deleted: workers.a[0] (which uses it) could not be deleted"
    )
    create = Step(
        "create", _change("workers.a[0]", "create"), 1, frozenset({SCHEDULER, "node_pool.a"})
    )
    h = hold(create, {"node_pool.a"})
    assert h is not None and h.words("workers.a[0]") == (
        "workers.a[0]: not created: node_pool.a failed"
    )
    assert hold(create, {SCHEDULER}) == Hold(Blocked.NO_SCHEDULER)
    assert hold(create, set(), have_scheduler=False) == Hold(Blocked.NO_SCHEDULER)
    assert hold(create, set()) is None
    update = Step("update", _change("workers.a", "update"), 0, frozenset({"node_pool.a"}))
    h = hold(update, {"node_pool.a"})
    assert h is not None and h.words("workers.a") == (
        "workers.a: not updated: node_pool.a failed to update"
    )


# -- the executor's outcomes ---------------------------------------------------------------


def test_not_deleted_while_something_using_it_stays(tmp_path: Path) -> None:
    p = fake_provider(1)
    engine = _engine(tmp_path, p)
    assert _apply(engine) == []
    p.world.fail("delete", "workers.default[0]")
    errors = _apply(engine, destroy=True)
    assert errors == [
        "workers.default[0]: delete failed: injected failure: delete workers.default[0]",
        "scheduler: not deleted: workers.default[0] (which uses it) could not be deleted",
    ]
    state = engine.read_state()
    assert state is not None and {r.address for r in state.resources} == {
        SCHEDULER,
        "workers.default[0]",
    }
    assert ("delete", SCHEDULER) not in p.world.calls
    assert _apply(engine, destroy=True) == []  # re-running converges
    assert p.world.things == {}


def test_not_created_when_what_it_needs_failed(tmp_path: Path) -> None:
    p = fake_provider(2, pools=True)
    p.world.fail("create", "node_pool.default")
    engine = _engine(tmp_path, p)
    errors = _apply(engine)
    assert errors[0] == (
        "node_pool.default: create failed: injected failure: create node_pool.default"
    )
    assert errors[1:] == [
        "workers.default[0]: not created: node_pool.default failed",
        "workers.default[1]: not created: node_pool.default failed",
    ]
    assert ("create", "workers.default[0]") not in p.world.calls
    state = engine.read_state()
    assert state is not None and [r.address for r in state.resources] == [SCHEDULER]
    assert _apply(engine) == []
    assert len(p.world.things) == 4


def test_no_scheduler_holds_every_worker_once(tmp_path: Path) -> None:
    p = fake_provider(4)
    p.world.fail("create", SCHEDULER)
    errors = _apply(_engine(tmp_path, p))
    assert errors == [
        "scheduler: create failed: injected failure: create scheduler",
        "no scheduler: 4 resource(s) were not created (workers.default[0], "
        "workers.default[1], workers.default[2], …)",
    ]
    assert p.world.things == {}


def test_not_updated_when_its_dependency_failed_to_update(tmp_path: Path) -> None:
    p = fake_provider(1, pools=True)
    engine = _engine(tmp_path, p)
    assert _apply(engine) == []
    # A hand-made plan: the pool and a worker standing on it both change in place.
    state = engine.read_state()
    assert state is not None
    changes = []
    for address in ("workers.default[0]", "node_pool.default"):
        rec = state.get(address)
        assert rec is not None
        spec = ResourceSpec(
            address, rec.type, {**rec.attributes, "size": 7}, depends_on=tuple(rec.depends_on)
        )
        changes.append(
            Change(
                address,
                "update",
                rec.type,
                before=rec.attributes,
                after=spec.attributes,
                resource=spec,
                record=rec,
            )
        )
    plan = Plan(
        "t", "fake", state.lineage, state.serial, "d", False, changes, [], Cost(0.0, 0.0, None)
    )
    p.world.fail("update", "node_pool.default")
    result = engine.execute(plan, wait=False)
    assert result.errors == [
        "node_pool.default: update failed: injected failure: update node_pool.default",
        "workers.default[0]: not updated: node_pool.default failed to update",
    ]
    assert ("update", "workers.default[0]") not in p.world.calls
    assert result.changed == 0
