"""The one fake provider: an in-memory backend with fault injection.

A :class:`World` is the backend (what "really" exists, keyed by id, each thing tagged
with its lineage and idempotency key the way the real backends tag theirs); a
:class:`FakeProvider` is the provider over it. Several providers (a re-opened
workspace, a changed target) can share one world. Faults are injected per operation and
address: fail (a ``ProviderError``, as a refusing backend) or crash (:class:`Crash`, a
``BaseException`` nothing in scalable catches, standing in for ``kill -9``), before the
backend acted or after it (the worst case: the thing exists, the caller never heard).

Unit tests of one function (the planner, the step graph) and the stateful engine test
use it; the provider conformance suite runs it beside the real providers.
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from scalable import addrs
from scalable.addrs import SCHEDULER
from scalable.manifest import parse_manifest
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.pricing.estimator import Price
from scalable.providers.base import (
    CreateContext,
    Created,
    Discovered,
    Observation,
    Provider,
    ProviderError,
    ResourceSpec,
)
from scalable.spec import TargetSpec, build_target
from scalable.state.model import ResourceRecord, StateFile

Op = Literal["create", "update", "delete", "observe", "discover"]
VM = "t.vm"
POOL = "t.pool"
FAKE_SCHEDULER = "tcp://fake-scheduler:8786"


class Crash(BaseException):  # noqa: N818 - it stands for a kill, not an error
    """The process died here (nothing in scalable may catch it)."""


@dataclass
class Thing:
    """One resource as the backend has it."""

    id: str
    address: str
    type: str
    lineage: str
    key: str
    attributes: dict[str, Any]
    status: Literal["alive", "pending"] = "alive"


@dataclass
class Fault:
    mode: Literal["fail", "crash"]
    when: Literal["before", "after"] = "before"
    times: int = 1


@dataclass
class World:
    """The backend: live things by id, observation overrides, injected faults."""

    things: dict[str, Thing] = field(default_factory=dict)
    # address → what observe says regardless of the things (a job that is pending, ...).
    observed: dict[str, Observation] = field(default_factory=dict)
    # address → attributes the backend reports as changed (drift: a pool resized by hand).
    drifted: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: dict[tuple[Op, str], Fault] = field(default_factory=dict)
    calls: list[tuple[Op, str]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- test controls --------------------------------------------------------------
    def fail(
        self, op: Op, address: str, *, times: int = 1, when: Literal["before", "after"] = "before"
    ) -> None:
        self.faults[(op, address)] = Fault("fail", when, times)

    def crash(self, op: Op, address: str, *, when: Literal["before", "after"] = "before") -> None:
        self.faults[(op, address)] = Fault("crash", when, 1)

    def seed(self, state: StateFile) -> None:
        """Make every record of a hand-written state exist (tests of the planner)."""
        for r in state.resources:
            if r.id and r.status != "creating":
                self.things[r.id] = Thing(
                    r.id, r.address, r.type, state.lineage, r.idempotency_key, dict(r.attributes)
                )

    def kill(self, address: str) -> list[str]:
        """Delete behind scalable's back; the ids that went."""
        gone = [i for i, t in self.things.items() if t.address == address]
        for i in gone:
            del self.things[i]
        return gone

    def ours(self, lineage: str) -> list[Thing]:
        return [t for t in self.things.values() if t.lineage == lineage]

    # -- what the provider calls ----------------------------------------------------
    def _fault(self, op: Op, address: str, when: str) -> None:
        f = self.faults.get((op, address))
        if f is None or f.when != when:
            return
        f.times -= 1
        if f.times <= 0:
            del self.faults[(op, address)]
        if f.mode == "crash":
            raise Crash(f"{op} {address}")
        raise ProviderError(f"injected failure: {op} {address}")

    def act(self, op: Op, address: str, action: Callable[[], Any]) -> Any:
        self.calls.append((op, address))
        self._fault(op, address, "before")
        out = action()
        self._fault(op, address, "after")
        return out

    def new_id(self) -> str:
        return f"vm-{next(self._ids)}"


class FakeProvider(Provider):
    """Scheduler + one ``t.vm`` per worker (+ a ``t.pool`` per group with ``pools``).

    Workers stand on the scheduler and, with pools, on their group's pool, whose size
    updates in place. Prices: ``hourly`` per vm (None: unknown, except the scheduler),
    pools 0.1 per unit of size.
    """

    name = "fake"
    world: World
    hourly: float | None = 0.5
    pools: bool = False
    # Dask worker names on each worker resource (the engine then waits for / retires
    # them: only for tests with a real scheduler, or none at all).
    worker_names: bool = False

    def desired(self, target: TargetSpec | None = None) -> list[ResourceSpec]:
        out = [ResourceSpec(SCHEDULER, VM, {"size": "s"})]
        for g in (target or self.target).groups:
            deps: tuple[str, ...] = (SCHEDULER,)
            if self.pools:
                out.append(ResourceSpec(addrs.node_pool(g.name), POOL, {"size": g.count}))
                deps += (addrs.node_pool(g.name),)
            for i in range(g.count):
                a = addrs.worker(g.name, i)
                out.append(
                    ResourceSpec(
                        a,
                        VM,
                        {"threads": g.threads_per_worker},
                        group=g.name,
                        depends_on=deps,
                        worker_names=(a,) if self.worker_names else (),
                    )
                )
        return out

    def updatable(self, before: dict[str, Any], after: dict[str, Any]) -> bool:
        return {k for k in after if before.get(k) != after.get(k)} == {"size"} and isinstance(
            after.get("size"), int
        )

    def price(self, resource: ResourceSpec) -> Price:
        if resource.type == POOL:
            return Price(hourly=0.1 * resource.attributes["size"], source="test catalog")
        if self.hourly is None and not resource.is_scheduler:
            return Price.unknown("no catalog entry")
        return Price(hourly=self.hourly or 0.0, source="test catalog")

    def horizon_hours(self) -> float | None:
        return 2.0

    def observe(self, records: Sequence[ResourceRecord]) -> dict[str, Observation]:
        out: dict[str, Observation] = {}
        for r in records:
            self.world.calls.append(("observe", r.address))
            if r.address in self.world.observed:
                out[r.address] = self.world.observed[r.address]
                continue
            thing = self.world.things.get(r.id or "")
            if thing is None:
                out[r.address] = Observation("gone", "not found")
            else:
                out[r.address] = Observation(
                    thing.status, attributes=dict(self.world.drifted.get(r.address, {}))
                )
        return out

    def discover(self, lineage: str) -> list[Discovered]:
        self.world.calls.append(("discover", lineage))
        return [
            Discovered(t.address, t.type, t.id, t.key, status=t.status)
            for t in self.world.ours(lineage)
        ]

    def create(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        def make() -> Created:
            # Idempotent by key: a retried create finds the first one.
            same = [t for t in self.world.things.values() if t.key == ctx.idempotency_key]
            if same:
                thing = same[0]
            else:
                thing = Thing(
                    self.world.new_id(),
                    resource.address,
                    resource.type,
                    ctx.lineage,
                    ctx.idempotency_key,
                    dict(resource.attributes),
                )
                self.world.things[thing.id] = thing
            return Created(id=thing.id, outputs=self._outputs(resource.address))

        created: Created = self.world.act("create", resource.address, make)
        return created

    def _outputs(self, address: str) -> dict[str, str]:
        return {SCHEDULER_ADDRESS: FAKE_SCHEDULER} if address == SCHEDULER else {}

    def recover_outputs(self, record: ResourceRecord) -> dict[str, str]:
        return self._outputs(record.address)

    def update(self, record: ResourceRecord, resource: ResourceSpec) -> Created:
        def change() -> Created:
            thing = self.world.things.get(record.id or "")
            if thing is None:
                raise ProviderError(f"{record.address}: {record.id} does not exist")
            thing.attributes = dict(resource.attributes)
            self.world.drifted.pop(record.address, None)
            return Created(id=thing.id)

        updated: Created = self.world.act("update", record.address, change)
        return updated

    def delete(self, record: ResourceRecord) -> None:
        def remove() -> None:
            # Deleting what is already gone succeeds.
            if record.id:
                self.world.things.pop(record.id, None)
            for i in [i for i, t in self.world.things.items() if t.key == record.idempotency_key]:
                del self.world.things[i]

        self.world.act("delete", record.address, remove)


def fake_target(
    workers: int = 1, *, threads: int = 1, groups: dict[str, int] | None = None, name: str = "t"
) -> TargetSpec:
    """A target spec (through the real manifest parser) with the given counts."""
    if groups is None:
        body = f"{{provider: local, max_workers: {workers}, threads_per_worker: {threads}}}"
    else:
        inner = ", ".join(
            f"{g}: {{max_workers: {n}, threads_per_worker: {threads}}}" for g, n in groups.items()
        )
        body = f"{{provider: local, groups: {{{inner}}}}}"
    text = textwrap.dedent(f"""
        project: {{name: demo}}
        targets:
          {name}: {body}
        """)
    return build_target(parse_manifest(text, Path("/p/scalable.yaml")), name)


def fake_provider(
    workers: int = 1,
    *,
    threads: int = 1,
    world: World | None = None,
    workdir: Path = Path("/p/.scalable/t"),
    **knobs: Any,
) -> FakeProvider:
    p = FakeProvider(
        fake_target(workers, threads=threads, groups=knobs.pop("groups", None)), workdir
    )
    p.world = world if world is not None else World()
    for k, v in knobs.items():
        setattr(p, k, v)
    return p
