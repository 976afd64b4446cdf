"""The applier: carries a plan out through a provider, journaling every step into state.

Write-ahead: a resource is recorded as ``creating`` (with its idempotency key) before
the provider call and updated after it, so a ``kill -9`` at any instant loses nothing:
the next refresh resolves ``creating`` records through ``Provider.discover``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scalable.addrs import SCHEDULER
from scalable.errors import ScalableError
from scalable.events import (
    RESOURCE_CREATED,
    RESOURCE_CREATING,
    RESOURCE_DELETED,
    RESOURCE_DELETING,
    RESOURCE_UPDATED,
    RESOURCE_UPDATING,
)
from scalable.hooks import Hook
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.planning.diff import make_plan
from scalable.planning.model import Change, Plan
from scalable.private_files import private_dir
from scalable.providers.base import CreateContext, Created, Provider, ProviderError, ResourceSpec
from scalable.spec import TargetSpec
from scalable.state.lock import LockInfo
from scalable.state.model import ResourceRecord, StateFile
from scalable.state.store import StateStore

if TYPE_CHECKING:  # what apply and objectives use is imported there: plan starts faster
    from scalable.payloads import ObjectivePlan as ObjectivePlanEvent
    from scalable.payloads import Payload
    from scalable.planning.steps import Step
    from scalable.roster import Roster


@dataclass
class ApplyResult:
    added: int = 0
    changed: int = 0
    destroyed: int = 0
    errors: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    ready_workers: int = 0
    expected_workers: int = 0
    # The workers run versions the client cannot exchange tasks with (the capacity is
    # up and in state; no work should be submitted): scalable.versions.
    version_error: ScalableError | None = None

    @property
    def partial(self) -> bool:
        return bool(self.errors)


class Engine:
    """Plan and apply for one target; the CLI and ScalableSession are faces over this."""

    def __init__(
        self,
        provider: Provider,
        store: StateStore,
        *,
        hooks: Hook | None = None,
        owner: str = "cli",
        ready_timeout: float = 180.0,
    ) -> None:
        self.provider = provider
        self.store = store
        # Everything the engine reports goes to its hooks; the provider reports there too.
        self.hooks = hooks or Hook()
        provider.hooks = self.hooks
        self.owner = owner
        self.ready_timeout = ready_timeout
        # The manifest's target; the provider's is this at the state's adaptive counts.
        self.base_target = provider.target
        # Set by objective planning: the counts it chose and the horizon it predicted.
        self.objective: Any | None = None
        self._preflighted = False
        # Once applied, an adaptive group's objective count is only its starting count:
        # the controller moves it (within the objective's bounds) and plans follow state.
        self.objective_applied = False
        self.saved_objective: ObjectivePlanEvent | None = None  # apply FILE (pin_saved)
        self.objective_asked_at: float | None = None
        # Set when the budget ran out (on_budget: stop): every later plan has no workers.
        self.workers_stopped = False

    @property
    def target(self) -> Any:
        return self.provider.target

    @contextmanager
    def locked(self, operation: str, timeout: float = 0.0) -> Iterator[LockInfo]:
        with self.store.lock(operation, timeout=timeout, notify=self.hooks.progress) as info:
            yield info

    def read_state(self) -> StateFile | None:
        return self.store.read()

    def preflight(self) -> None:
        """The provider's preflight (``Provider.validate``), once per engine.

        Every plan and apply that may create capacity passes here — the CLI's and
        ``ScalableSession``'s alike — so no face can skip a check that keeps capacity
        safe (a GKE target without ``allowed_cidrs`` would be open to the world).
        A destroy does not: tearing down must work even if the manifest no longer
        passes.
        """
        if not self._preflighted:
            self.provider.validate()
            self._preflighted = True

    def counted_target(self, state: StateFile | None, scale: dict[str, int] | None = None,
                       *, destroy: bool = False) -> TargetSpec:
        """The manifest's target at the counts to run: adaptive groups at their current
        size (``state.scale``, then ``scale``), an objective's choice on top, nothing
        while the workers are stopped."""
        target = self.base_target.scaled({**(state.scale if state else {}), **(scale or {})})
        goal = self.objective
        if goal is not None:
            adaptive = self.base_target.group(goal.group).adaptive is not None
            if not (adaptive and self.objective_applied):
                target = target.with_counts({goal.group: goal.chosen.workers})
        if self.workers_stopped and not destroy:
            target = target.with_counts({g.name: 0 for g in target.groups})
        return target

    def plan(self, *, destroy: bool = False, refresh: bool = True,
             scale: dict[str, int] | None = None, replace: Sequence[str] = (),
             targets: Sequence[str] = (), refresh_only: bool = False) -> Plan:
        """Plan for the target at its current counts (``scale``: other counts, a preview)."""
        if not destroy:
            self.preflight()
        state = self.store.read()
        target = self.counted_target(state, scale, destroy=destroy)
        horizon = self.objective.horizon_hours if self.objective is not None else None
        plan = make_plan(
            self.provider,
            state,
            self.target.manifest_digest,
            destroy=destroy,
            refresh=refresh,
            horizon_hours=horizon,
            target=target,
            replace=replace,
            targets=targets,
            refresh_only=refresh_only,
        )
        if self.objective is not None and not destroy:
            plan.objective = self.objective.event().to_data()
        return plan

    def pin_saved(self, plan: Plan) -> None:
        """``apply FILE``: the objective the saved plan was made for is the run's (its
        counts are in the plan already; the event tells a detached controller its
        budget and bounds)."""
        from scalable.payloads import ObjectivePlan

        if plan.objective is not None and not plan.destroy:
            self.saved_objective = ObjectivePlan.from_data(plan.objective)
            self.objective_applied = False

    def plan_objectives(
        self, objectives: Any, *, tasks: int | None = None, tag: str | None = None,
        cached: Any | None = None,
    ) -> Any:
        """Choose worker counts for ``objectives``; later plans use them."""
        from scalable.scaling.objectives import plan_objectives

        self.objective = plan_objectives(self.provider, objectives, tasks=tasks, tag=tag,
                                         cached=cached)
        self.objective_applied = False
        return self.objective

    def scale(
        self, counts: dict[str, int], reasons: dict[str, str], *, lock_timeout: float = 30.0
    ) -> ApplyResult | None:
        """Set adaptive groups' counts and apply (the controller's and the dashboard's path).

        Returns None when nothing changed. Every change is a ``scale_decision`` event.
        """
        from scalable.payloads import ScaleDecision, ScaleFailed

        with self.locked("scale", lock_timeout):
            state = self.store.read()
            if state is None or SCHEDULER_ADDRESS not in state.outputs:
                return None
            before = {
                g.name: state.scale.get(g.name, g.count)
                for g in self.base_target.groups
                if g.adaptive is not None
            }
            # Groups not named keep their current count.
            wanted = self.base_target.scaled({**before, **counts})
            after = {g.name: g.count for g in wanted.groups if g.name in before}
            changed = {k: v for k, v in after.items() if v != before[k]}
            if not changed:
                return None
            state.scale.update(changed)
            self._save(state)
            result = self.execute(self.plan(), wait=False)
            # Recorded once carried out: a decision in telemetry is one that happened.
            for group, count in changed.items():
                why = reasons.get(group, "")
                if result.errors:
                    self._event(ScaleFailed(group, before[group], count, why,
                                            list(result.errors)))
                else:
                    self._event(ScaleDecision(group, before[group], count, why))
            return result

    def stop_workers(self, *, lock_timeout: float = 30.0) -> ApplyResult | None:
        """Retire every worker and keep them gone (the budget ran out); the scheduler
        stays, so clients see why their work stopped."""
        self.workers_stopped = True
        with self.locked("budget stop", lock_timeout):
            state = self.store.read()
            if state is None or SCHEDULER_ADDRESS not in state.outputs:
                return None
            return self.execute(self.plan(), wait=False)

    def destroy_all(self, *, lock_timeout: float = 30.0) -> ApplyResult:
        """Destroy the whole target (on_budget: destroy)."""
        with self.locked("budget destroy", lock_timeout):
            return self.execute(self.plan(destroy=True), wait=False)

    # -- apply --------------------------------------------------------------------------
    def execute(self, plan: Plan, *, wait: bool = True) -> ApplyResult:
        """Carry ``plan`` out. The caller holds the lock."""
        if not plan.destroy:
            self.preflight()  # a plan made elsewhere (a saved file) is checked here too
        # Logs, scripts, TLS files and the scheduler file go here: private before any
        # provider writes into it (a remote state backend writes nothing locally first).
        private_dir(self.provider.workdir)
        state = self.store.read() or StateFile(
            target=self.target.name, provider=self.target.provider, owner=self.owner
        )
        if not plan.destroy:
            self._check_join_material(state, plan)
        result = ApplyResult()
        # The objective's prediction, once per objective (not again for each resize).
        goal = self.objective
        pinned = None
        if not plan.destroy and not self.objective_applied:
            pinned = goal.event() if goal is not None else self.saved_objective
        pin_objective = pinned is not None
        if pinned is not None:
            self.objective_asked_at = time.time()  # the deadline's clock starts here
        if not state.resources:
            state.owner = self.owner  # whoever brings capacity up owns it
        for rec in plan.adopted:
            state.put(rec)
            if rec.address == SCHEDULER:
                state.outputs.update(self.provider.recover_outputs(rec))
        if plan.refresh_only:
            # Record what is really there; capacity is not touched.
            for rec in plan.refreshed:
                state.put(rec)
            for address in plan.forget:
                state.remove(address)
                if address == SCHEDULER:
                    state.outputs.clear()
        elif not plan.destroy:
            state.manifest_digest = plan.manifest_digest
            if pinned is not None and self.base_target.group(pinned.group).adaptive is not None:
                # The objective's count starts the adaptive group (so a later plain plan
                # does not undo it); from here the controller moves it.
                state.scale[pinned.group] = pinned.workers
            if pin_objective:
                self.objective_applied = True
        self._save(state)

        from scalable.planning.steps import step_graph

        steps = step_graph(state, plan.actionable)
        # When the scheduler goes too, no data is moved off the workers first, so they
        # are asked to stop before the start is recorded: their close (Dask's graceful
        # one) then overlaps telemetry's first write (opening its database) instead of
        # following it. A retirement (the scheduler stays) comes after the start.
        whole = _scheduler_delete(steps) is not None
        if whole:
            self._ask_to_stop(state, steps)
        from scalable.payloads import StepCompleted, StepStarted  # after the ask: ~15 ms

        self._event(StepStarted(plan.destroy, len(plan.actionable), plan=plan))
        if pinned is not None:
            self._event(pinned)
        if not whole:
            self._ask_to_stop(state, steps)
        self._run_steps(state, steps, result)

        if plan.destroy and not state.resources:
            state.outputs = {}
        self._save(state)
        result.outputs = dict(state.outputs)
        hosts = [r for r in state.resources if r.status == "ready" and r.worker_names]
        result.expected_workers = sum(len(r.worker_names) for r in hosts)
        if wait and hosts and state.outputs.get(SCHEDULER_ADDRESS) and not plan.destroy:
            result.ready_workers = self.wait_ready(state.outputs, hosts, result)
        self._event(StepCompleted(plan.destroy, result.added, result.changed,
                                  result.destroyed, list(result.errors),
                                  outputs=dict(result.outputs)))
        return result

    def _ask_to_stop(self, state: StateFile, steps: list[Step]) -> None:
        """Before any step runs: move data off the workers that go (when a scheduler
        stays to keep it), then ask the provider to stop them all at once."""
        deletes = [s for s in steps if s.op == "delete"]
        going = [s.change.record for s in deletes
                 if s.change.record and s.address != SCHEDULER]
        scheduler = _scheduler_delete(steps)
        if scheduler is None:
            # Moving data off workers only helps when a scheduler stays to keep it. When
            # it goes too, no Client round-trip: the provider stops each worker gracefully
            # (SIGTERM to the nanny, which closes its worker), and the scheduler hears the
            # close or, stopped at the same time (prepare_delete's ``scheduler``), its
            # telemetry plugin records the workers it still holds as retired.
            self._retire(state, [s.change.record for s in deletes if s.counts
                                 and s.change.record and s.address != SCHEDULER])
        if going:
            try:
                self.provider.prepare_delete(going, scheduler=scheduler.change.record
                                             if scheduler is not None else None)
            except ProviderError as exc:  # each delete still tries, and reports
                self.hooks.progress(f"batch delete failed ({exc}); deleting one by one")

    def _run_steps(self, state: StateFile, steps: list[Step], result: ApplyResult) -> None:
        """The executor: run ``steps`` in order, skipping (and reporting) held ones."""
        from scalable.planning.steps import hold

        # What failed, per op: a failed delete holds deletes, a failed create creates.
        failed: dict[str, set[str]] = {"delete": set(), "create": set(), "update": set()}
        i = 0
        while i < len(steps):
            step = steps[i]
            if step.op == "create":
                wave = [s for s in steps[i:] if s.op == "create" and s.wave == step.wave]
                i += len(wave)
                self._run_creates(state, wave, failed["create"], result)
                continue
            i += 1
            held = hold(step, failed[step.op])
            if held is not None:
                result.errors.append(held.words(step.address))
                failed[step.op].add(step.address)
            elif step.op == "delete":
                if self._delete(state, step.change, result):
                    result.destroyed += step.counts
                else:
                    failed["delete"].add(step.address)
            elif not self._update(state, step.change, result):
                failed["update"].add(step.address)

    def _run_creates(
        self, state: StateFile, wave: list[Step], failed: set[str], result: ApplyResult
    ) -> None:
        """One dependency level of creates, as one ``create_many`` batch."""
        from scalable.planning.steps import Blocked, hold

        batch: list[Change] = []
        no_scheduler: list[str] = []
        up = SCHEDULER_ADDRESS in state.outputs
        for step in wave:
            held = hold(step, failed, have_scheduler=up)
            if held is None:
                batch.append(step.change)
                continue
            failed.add(step.address)
            if held.why is Blocked.NO_SCHEDULER:
                no_scheduler.append(step.address)
            else:
                result.errors.append(held.words(step.address))
        if no_scheduler:
            result.errors.append(f"no scheduler: {len(no_scheduler)} resource(s) were not "
                                 f"created ({', '.join(no_scheduler[:3])}"
                                 f"{', …' if len(no_scheduler) > 3 else ''})")
        if batch:
            failed |= self._create_batch(state, batch, result)

    def _event(self, payload: Payload) -> None:
        self.hooks.event(payload)

    def record(self, payload: Payload) -> None:
        """Record a telemetry event into this engine's run (the controller's decisions)."""
        self._event(payload)

    def _save(self, state: StateFile) -> None:
        self.store.write(state)

    def _check_join_material(self, state: StateFile, plan: Plan) -> None:
        """Refuse, before anything is created, to add capacity to a running scheduler
        from a machine without the target's TLS material (a CI runner with only the
        remote state): the new workers could never join."""
        if SCHEDULER_ADDRESS not in state.outputs:
            return
        changing = {c.address for c in plan.actionable
                    if c.action in ("create", "replace", "update")}
        if not changing or SCHEDULER in changing:
            return  # nothing to join, or a new scheduler (and new material) comes too
        missing = [p for p in self.provider.join_material() if not p.exists()]
        if missing:
            folder = missing[0].parent
            raise ScalableError(
                f"target {self.target.name!r}: its scheduler runs with TLS, but this machine "
                f"lacks {', '.join(p.name for p in missing)} in {folder}: new workers "
                "could never join it; nothing was changed",
                hint=f"copy {folder}/ (mode 0700) from the machine that applied this target, "
                     "or run there; or destroy and apply afresh from here",
            )

    def _delete(self, state: StateFile, change: Change, result: ApplyResult) -> bool:
        from scalable.payloads import ResourceFailed, ResourceStep

        current = state.get(change.address)
        rec = change.record or current
        if rec is None:
            return False
        assert rec is not None
        # An orphan may share an address with a recorded resource: only touch the record
        # when it is the same resource.
        recorded = current is not None and (
            rec.id == current.id or rec.idempotency_key == current.idempotency_key
        )
        if recorded and current is not None:
            rec = current
            rec.status = "deleting"
            self._save(state)
        self._event(ResourceStep(RESOURCE_DELETING, change.address, change.type))
        try:
            self.provider.delete(rec)
        except ProviderError as exc:
            result.errors.append(f"{change.address}: delete failed: {exc}")
            self._event(ResourceFailed(change.address, change.type, "delete", str(exc)))
            return False
        if recorded:
            state.remove(change.address)
            if change.address == SCHEDULER:
                state.outputs.clear()
            self._save(state)
        self.hooks.progress(f"{change.address}: Destruction complete")
        self._event(ResourceStep(RESOURCE_DELETED, change.address, change.type))
        return True

    def _context(self, state: StateFile, spec: ResourceSpec) -> CreateContext:
        return CreateContext(
            lineage=state.lineage,
            idempotency_key=f"{state.lineage[:8]}-{spec.address}-{uuid.uuid4().hex[:8]}",
            target=self.target.name,
            project=self.target.project,
            outputs=dict(state.outputs),
            spec=self.counted_target(state),
        )

    def _create_batch(
        self, state: StateFile, changes: list[Change], result: ApplyResult
    ) -> set[str]:
        """Create ``changes`` through ``create_many``; return the addresses that failed."""
        from scalable.payloads import ResourceFailed, ResourceStep

        failed: set[str] = set()
        specs = [c.resource for c in changes if c.resource is not None]
        contexts = [self._context(state, s) for s in specs]
        for spec, ctx in zip(specs, contexts, strict=True):
            state.put(
                ResourceRecord(
                    address=spec.address, type=spec.type, status="creating",
                    idempotency_key=ctx.idempotency_key, group=spec.group,
                    attributes=spec.attributes, worker_names=list(spec.worker_names),
                    depends_on=list(spec.depends_on),
                )
            )
        self._save(state)  # write-ahead: recorded before the provider is called
        for spec in specs:
            self._event(ResourceStep(RESOURCE_CREATING, spec.address, spec.type))
        started = time.monotonic()
        outcomes = self.provider.create_many(specs, contexts)
        for spec, out in zip(specs, outcomes, strict=True):
            if isinstance(out, ProviderError):
                state.remove(spec.address)
                result.errors.append(f"{spec.address}: create failed: {out}")
                self._event(ResourceFailed(spec.address, spec.type, "create", str(out)))
                failed.add(spec.address)
                continue
            assert isinstance(out, Created)
            rec = state.get(spec.address)
            assert rec is not None
            rec.status = "ready"
            rec.id = out.id
            rec.meta = out.meta
            state.outputs.update(out.outputs)
            result.added += 1
            self._event(ResourceStep(RESOURCE_CREATED, spec.address, spec.type, out.id,
                                     obtained=_obtained(out.meta)))
        self._save(state)
        self.hooks.progress(
            f"{len(specs) - sum(isinstance(o, ProviderError) for o in outcomes)}/{len(specs)} "
            f"created ({', '.join(s.address for s in specs[:3])}"
            f"{', …' if len(specs) > 3 else ''}) in {time.monotonic() - started:.1f}s"
        )
        return failed

    def _update(self, state: StateFile, change: Change, result: ApplyResult) -> bool:
        from scalable.payloads import ResourceFailed, ResourceStep

        rec = state.get(change.address)
        if rec is None or change.resource is None:
            return False
        self._event(ResourceStep(RESOURCE_UPDATING, change.address, change.type, rec.id))
        try:
            out = self.provider.update(rec, change.resource)
        except ProviderError as exc:
            result.errors.append(f"{change.address}: update failed: {exc}")
            self._event(ResourceFailed(change.address, change.type, "update", str(exc)))
            return False
        rec.attributes = change.resource.attributes
        rec.worker_names = list(change.resource.worker_names)
        rec.meta = {**rec.meta, **out.meta}
        state.outputs.update(out.outputs)
        self._save(state)
        result.changed += 1
        self._event(ResourceStep(RESOURCE_UPDATED, change.address, change.type, rec.id))
        return True

    # -- the scheduler side ----------------------------------------------------------------
    def connect(self, outputs: dict[str, str], timeout: float = 10.0) -> Any:
        from distributed import Client

        return Client(
            outputs[SCHEDULER_ADDRESS],
            security=self.provider.client_security(outputs),
            timeout=timeout,
            set_as_default=False,
        )

    def _retire(self, state: StateFile, records: list[ResourceRecord | None]) -> None:
        """Move data off workers that are going away before their processes stop."""
        names = [n for r in records if r is not None for n in r.worker_names]
        addr = state.outputs.get(SCHEDULER_ADDRESS)
        if not names or not addr:
            return
        from scalable.providers.retire import retire_workers

        retire_workers(addr, self.provider.client_security(state.outputs), names,
                       progress=self.hooks.progress)

    def _check_versions(self, roster: Roster, result: ApplyResult) -> None:
        """Once the workers are in: do they run the client's Python, dask, distributed,
        cloudpickle (and msgpack)? A fatal difference is kept for the caller to raise;
        a harmless one is a warning."""
        from scalable.versions import VersionMismatch, check_versions

        try:
            versions, names = roster.versions()
            check_versions(versions, names, self.hooks)
        except VersionMismatch as exc:
            result.version_error = exc

    def _roster(self, outputs: dict[str, str]) -> Roster:
        """Where registrations are read: the provider's roster file when its scheduler
        writes one (no distributed import here), else a Client."""
        from scalable.roster import ClientRoster, FileRoster

        path = self.provider.roster_file()
        found = FileRoster.wait_for(path, timeout=2.0) if path is not None else None
        return found if found is not None else ClientRoster(self.connect(outputs, timeout=30.0))

    def wait_ready(
        self, outputs: dict[str, str], hosts: list[ResourceRecord], result: ApplyResult
    ) -> int:
        """Wait until every expected worker has registered; progress as it comes.

        A resource that dies while we wait is reported at once (with the provider's
        reason) instead of after the timeout.
        """
        from scalable.payloads import ResourceFailed, WorkersWaiting

        want = {n for r in hosts for n in r.worker_names}
        deadline = time.monotonic() + self.ready_timeout
        try:
            roster = self._roster(outputs)
        except Exception as exc:
            result.errors.append(f"cannot reach the scheduler at "
                                 f"{outputs['scheduler_address']}: {exc}")
            return 0
        seen = -1
        next_check = time.monotonic() + 1.0
        try:
            while True:
                ready = want & roster.names()
                if len(ready) != seen:
                    seen = len(ready)
                    self.hooks.progress(f"workers {seen}/{len(want)} ready")
                    self._event(WorkersWaiting(seen, len(want)))
                if ready == want:
                    self._check_versions(roster, result)
                    return seen
                if time.monotonic() > next_check:
                    next_check = time.monotonic() + 1.0
                    waiting = [r for r in hosts if set(r.worker_names) - ready]
                    for addr, obs in self.provider.observe(waiting).items():
                        if obs.status == "gone":
                            rec = next(r for r in waiting if r.address == addr)
                            want -= set(rec.worker_names)
                            hosts = [r for r in hosts if r.address != addr]
                            result.errors.append(f"{addr} did not come up: {obs.reason}")
                            self._event(ResourceFailed(addr, rec.type, "create",
                                                       f"did not come up: {obs.reason}"))
                    if ready == want:
                        self._check_versions(roster, result)
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
            roster.close()


# What a create's meta says about a fallback taken (EC2 instance_types / subnets, GKE
# machine_types).
OBTAINED_KEYS = ("instance_type", "subnet", "availability_zone", "market", "capacity_provider",
                 "machine_type", "zone")


def _obtained(meta: dict[str, Any]) -> dict[str, Any] | None:
    if not meta.get("failover"):
        return None
    return {**{k: meta[k] for k in OBTAINED_KEYS if meta.get(k)},
            "failover": list(meta["failover"])}


def _scheduler_delete(steps: Sequence[Step]) -> Step | None:
    """The step that deletes the scheduler, if the scheduler goes."""
    return next((s for s in steps if s.op == "delete" and s.address == SCHEDULER), None)
