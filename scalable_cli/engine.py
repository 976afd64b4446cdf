"""The applier: carries a plan out through a provider, journaling every step into state.

Write-ahead: a resource is recorded as ``creating`` (with its idempotency key) before
the provider call and updated after it, so a ``kill -9`` at any instant loses nothing:
the next refresh resolves ``creating`` records through ``Provider.discover``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from scalable.planning.diff import make_plan, spec_of
from scalable.planning.model import Change, Plan
from scalable.providers.base import CreateContext, Created, Provider, ProviderError, ResourceSpec
from scalable.state.lock import LockInfo
from scalable.state.model import ResourceRecord, StateFile
from scalable.state.store import StateStore

Notify = Callable[[str], None]
EventSink = Callable[[str, dict[str, Any]], None]


def _quiet(_: str) -> None:
    pass


def _no_events(_: str, __: dict[str, Any]) -> None:
    pass


@dataclass
class ApplyResult:
    added: int = 0
    changed: int = 0
    destroyed: int = 0
    errors: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    ready_workers: int = 0
    expected_workers: int = 0

    @property
    def partial(self) -> bool:
        return bool(self.errors)


def _tier(address: str) -> int:
    """Creation order: what Dask runs on (a node pool, a security group) first, then the
    scheduler, then workers and the rest. Deletion goes the other way round."""
    if address == "scheduler":
        return 1
    if address.startswith("workers.") or address == "controller":
        return 2
    return 0


def _update_order(change: Change) -> int:
    """In-place updates: what Dask runs on grows first and shrinks last (a node pool is
    resized up before its workers are added, and down after they are gone)."""
    tier = _tier(change.address)
    if tier == 0 and change.hourly_delta is not None and change.hourly_delta < 0:
        return 3
    return tier


class Engine:
    """Plan and apply for one target; the CLI and ScalableSession are faces over this."""

    def __init__(
        self,
        provider: Provider,
        store: StateStore,
        *,
        notify: Notify = _quiet,
        events: EventSink = _no_events,
        owner: str = "cli",
        ready_timeout: float = 180.0,
    ) -> None:
        self.provider = provider
        self.store = store
        self.notify = notify
        self.events = events
        self.owner = owner
        self.ready_timeout = ready_timeout

    @property
    def target(self) -> Any:
        return self.provider.target

    @contextmanager
    def locked(self, operation: str, timeout: float = 0.0) -> Iterator[LockInfo]:
        with self.store.lock(operation, timeout=timeout, notify=self.notify) as info:
            yield info

    def read_state(self) -> StateFile | None:
        return self.store.read()

    def plan(self, *, destroy: bool = False, refresh: bool = True) -> Plan:
        return make_plan(
            self.provider,
            self.store.read(),
            self.target.manifest_digest,
            destroy=destroy,
            refresh=refresh,
        )

    # -- apply --------------------------------------------------------------------------
    def execute(self, plan: Plan, *, wait: bool = True) -> ApplyResult:
        """Carry ``plan`` out. The caller holds the lock."""
        state = self.store.read() or StateFile(
            target=self.target.name, provider=self.target.provider, owner=self.owner
        )
        result = ApplyResult()
        op = "destroy" if plan.destroy else "apply"
        self.events(f"{op}_start", {"changes": len(plan.actionable)})
        if not state.resources:
            state.owner = self.owner  # whoever brings capacity up owns it
        for rec in plan.adopted:
            state.put(rec)
        if not plan.destroy:
            state.manifest_digest = plan.manifest_digest
        self._save(state)
        adopted = state.get("scheduler")
        if (not plan.destroy and adopted is not None and adopted in plan.adopted
                and "scheduler_address" not in state.outputs):
            self._recover_outputs(state, adopted, result)

        changes = plan.actionable
        deletes = [c for c in changes if c.action in ("delete", "replace")]
        # A re-create of something gone still clears what is left of it first.
        stale = [c for c in changes if c.action == "create" and c.record is not None]
        creates = [c for c in changes if c.action in ("create", "replace")]
        updates = [c for c in changes if c.action == "update"]

        self._retire(state, [c.record for c in deletes if c.record and c.address != "scheduler"])
        for c in sorted(deletes + stale, key=lambda c: -_tier(c.address)):
            counted = c in deletes
            if self._delete(state, c, result) and counted and c.action == "delete":
                result.destroyed += 1
            elif counted and c.action == "replace":
                result.destroyed += 1

        infra = [c for c in creates if _tier(c.address) == 0]
        sched = [c for c in creates if _tier(c.address) == 1]
        others = [c for c in creates if _tier(c.address) == 2]
        if infra:
            self._create_batch(state, infra, result)
            if result.errors and (sched or others):
                result.errors.append("what the scheduler and workers run on failed: "
                                     "they were not created")
                sched, others = [], []
        for c in sched:
            self._create_batch(state, [c], result)
        if others:
            if "scheduler_address" not in state.outputs:
                result.errors.append("no scheduler: workers were not created")
            else:
                self._create_batch(state, others, result)
        failed: set[str] = set()
        for c in sorted(updates, key=_update_order):
            blocked = set(c.resource.depends_on if c.resource else ()) & failed
            if blocked:
                result.errors.append(f"{c.address}: not updated, {', '.join(sorted(blocked))} "
                                     "failed to")
            if blocked or not self._update(state, c, result):
                failed.add(c.address)

        if plan.destroy and not state.resources:
            state.outputs = {}
        self._save(state)
        result.outputs = dict(state.outputs)
        names = [n for r in state.resources if r.status == "ready" for n in r.worker_names]
        result.expected_workers = len(names)
        if wait and names and state.outputs.get("scheduler_address") and not plan.destroy:
            result.ready_workers = self.wait_ready(state.outputs, names, result)
        self.events(
            f"{op}_complete",
            {"added": result.added, "changed": result.changed,
             "destroyed": result.destroyed, "errors": result.errors},
        )
        return result

    def _save(self, state: StateFile) -> None:
        self.store.write(state)

    def _delete(self, state: StateFile, change: Change, result: ApplyResult) -> bool:
        rec = state.get(change.address) or change.record
        if rec is None:
            return False
        rec.status = "deleting"
        state.put(rec)
        self._save(state)
        try:
            self.provider.delete(rec)
        except ProviderError as exc:
            result.errors.append(f"{change.address}: delete failed: {exc}")
            return False
        state.remove(change.address)
        if change.address == "scheduler":
            for key in list(state.outputs):
                state.outputs.pop(key)
        self._save(state)
        self.notify(f"{change.address}: Destruction complete")
        self.events("resource_deleted", {"address": change.address, "type": change.type})
        return True

    def _recover_outputs(self, state: StateFile, rec: ResourceRecord,
                         result: ApplyResult) -> None:
        """An adopted scheduler's address died with the interrupted apply: creating it
        again with the same idempotency key finds it and returns it (creates are
        idempotent), outputs included."""
        ctx = CreateContext(lineage=state.lineage, idempotency_key=rec.idempotency_key,
                            target=self.target.name, project=self.target.project,
                            outputs=dict(state.outputs))
        try:
            out = self.provider.create(spec_of(rec), ctx)
        except ProviderError as exc:
            result.errors.append(f"scheduler: adopted, but its address is lost: {exc}")
            return
        rec.id = out.id
        rec.meta = {**rec.meta, **out.meta}
        state.outputs.update(out.outputs)
        self._save(state)

    def _context(self, state: StateFile, spec: ResourceSpec) -> CreateContext:
        return CreateContext(
            lineage=state.lineage,
            idempotency_key=f"{state.lineage[:8]}-{spec.address}-{uuid.uuid4().hex[:8]}",
            target=self.target.name,
            project=self.target.project,
            outputs=dict(state.outputs),
        )

    def _create_batch(self, state: StateFile, changes: list[Change], result: ApplyResult) -> None:
        specs = [c.resource for c in changes if c.resource is not None]
        contexts = [self._context(state, s) for s in specs]
        for spec, ctx in zip(specs, contexts, strict=True):
            state.put(
                ResourceRecord(
                    address=spec.address, type=spec.type, status="creating",
                    idempotency_key=ctx.idempotency_key, group=spec.group,
                    attributes=spec.attributes, worker_names=list(spec.worker_names),
                )
            )
        self._save(state)  # write-ahead: recorded before the provider is called
        started = time.monotonic()
        outcomes = self.provider.create_many(specs, contexts)
        for spec, ctx, out in zip(specs, contexts, outcomes, strict=True):
            if isinstance(out, ProviderError):
                state.remove(spec.address)
                result.errors.append(f"{spec.address}: create failed: {out}")
                continue
            assert isinstance(out, Created)
            rec = state.get(spec.address)
            assert rec is not None
            rec.status = "ready"
            rec.id = out.id
            rec.meta = out.meta
            state.outputs.update(out.outputs)
            result.added += 1
            self.events("resource_created", {"address": spec.address, "type": spec.type,
                                             "id": out.id})
        self._save(state)
        self.notify(
            f"{len(specs) - sum(isinstance(o, ProviderError) for o in outcomes)}/{len(specs)} "
            f"created ({', '.join(s.address for s in specs[:3])}"
            f"{', …' if len(specs) > 3 else ''}) in {time.monotonic() - started:.1f}s"
        )

    def _update(self, state: StateFile, change: Change, result: ApplyResult) -> bool:
        rec = state.get(change.address)
        if rec is None or change.resource is None:
            return False
        try:
            out = self.provider.update(rec, change.resource)
        except ProviderError as exc:
            result.errors.append(f"{change.address}: update failed: {exc}")
            return False
        rec.attributes = change.resource.attributes
        rec.worker_names = list(change.resource.worker_names)
        rec.meta = {**rec.meta, **out.meta}
        state.outputs.update(out.outputs)
        self._save(state)
        result.changed += 1
        return True

    # -- the scheduler side ----------------------------------------------------------------
    def connect(self, outputs: dict[str, str], timeout: float = 10.0) -> Any:
        from distributed import Client

        return Client(
            outputs["scheduler_address"],
            security=self.provider.client_security(outputs),
            timeout=timeout,
            set_as_default=False,
        )

    def _retire(self, state: StateFile, records: list[ResourceRecord | None]) -> None:
        """Move data off workers that are going away before their processes stop."""
        names = [n for r in records if r is not None for n in r.worker_names]
        addr = state.outputs.get("scheduler_address")
        if not names or not addr:
            return
        try:
            client = self.connect(state.outputs, timeout=5.0)
        except Exception:
            return  # no scheduler left: nothing to move, deletes still go ahead
        try:
            info = client.scheduler_info(n_workers=-1)["workers"]
            victims = [a for a, w in info.items() if w.get("name") in set(names)]
            if victims:
                self.notify(f"retiring {len(victims)} worker(s) gracefully (moving data off)")
                client.retire_workers(workers=victims, close_workers=True)
        except Exception as exc:  # retiring is best effort; the delete follows regardless
            self.notify(f"graceful retire failed ({exc}); stopping the workers")
        finally:
            client.close()

    def wait_ready(self, outputs: dict[str, str], names: list[str], result: ApplyResult) -> int:
        """Wait until every expected worker has registered; progress as it comes."""
        want = set(names)
        deadline = time.monotonic() + self.ready_timeout
        try:
            client = self.connect(outputs, timeout=30.0)
        except Exception as exc:
            result.errors.append(f"cannot reach the scheduler at "
                                 f"{outputs['scheduler_address']}: {exc}")
            return 0
        seen = -1
        try:
            while True:
                info = client.scheduler_info(n_workers=-1)["workers"]
                ready = want & {str(w.get("name")) for w in info.values()}
                if len(ready) != seen:
                    seen = len(ready)
                    self.notify(f"workers {seen}/{len(want)} ready")
                if ready == want:
                    return seen
                if time.monotonic() > deadline:
                    missing = sorted(want - ready)
                    result.errors.append(
                        f"{len(missing)} worker(s) did not register within "
                        f"{self.ready_timeout:.0f}s: {', '.join(missing[:5])}"
                    )
                    return seen
                time.sleep(0.1)
        finally:
            client.close()

