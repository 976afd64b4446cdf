"""The planner: desired resources vs. recorded state (refreshed through the provider)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scalable import addrs
from scalable.addrs import SCHEDULER
from scalable.planning import surgery
from scalable.planning.model import Action, Change, Cost, Drift, Plan, PriceRange
from scalable.planning.reasons import Reason, Why
from scalable.pricing.estimator import Price
from scalable.providers.base import Discovered, Observation, Provider, ResourceSpec
from scalable.spec import GroupSpec, TargetSpec
from scalable.state.model import ResourceRecord, StateFile


def spec_of(record: ResourceRecord) -> ResourceSpec:
    return ResourceSpec(
        address=record.address,
        type=record.type,
        attributes=record.attributes,
        group=record.group,
        worker_names=tuple(record.worker_names),
        depends_on=tuple(record.depends_on),
    )


def _changes(before: dict[str, object], after: dict[str, object]) -> Reason:
    keys = sorted(set(before) | set(after))
    return Reason(Why.CHANGED, {"changes": tuple(
        (k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k))})


# Live records by address, their observations, drift, records adopted from an
# interrupted apply, and deletions of orphans.
Resolved = tuple[dict[str, ResourceRecord], dict[str, Observation], list[Drift],
                 list[ResourceRecord], list[Change]]


def _resolve(
    state: StateFile,
    observed: dict[str, Observation],
    discovered: Sequence[Discovered],
    refreshed: bool,
) -> Resolved:
    """Settle `creating`/`deleting` records and orphans before diffing.

    Returns the live records by address, their observations, drift, records adopted from
    an interrupted apply, and deletions of orphans.
    """
    by_key = {d.idempotency_key: d for d in discovered}
    known_ids = {r.id for r in state.resources if r.id}
    known_keys = {r.idempotency_key for r in state.resources}
    live: dict[str, ResourceRecord] = {}
    obs: dict[str, Observation] = {}
    drift: list[Drift] = []
    adopted: list[ResourceRecord] = []
    orphan_deletes: list[Change] = []

    for rec in state.resources:
        o = observed.get(rec.address)
        if rec.status == "creating":
            found = by_key.get(rec.idempotency_key)
            if found is not None and found.status != "gone":
                rec = ResourceRecord(
                    **{**rec.__dict__, "status": "ready", "id": found.id,
                       "meta": {**rec.meta, **found.meta}}
                )
                adopted.append(rec)
                drift.append(Drift(rec.address, rec.type, "adopted",
                                   f"created by an interrupted apply; adopting {found.id}"))
                o = Observation(found.status)
            elif refreshed:
                # Discovery is authoritative for creating records: not found = never made.
                drift.append(Drift(rec.address, rec.type, "gone",
                                   "an interrupted apply recorded it but never created it"))
                obs[rec.address] = Observation("gone", "never created")
                live[rec.address] = rec
                continue
        live[rec.address] = rec
        if o is None:
            # Not refreshed (--no-refresh): trust the record.
            o = Observation("alive", "not refreshed")
        obs[rec.address] = o
        changed = {k: v for k, v in o.attributes.items() if rec.attributes.get(k) != v}
        if changed and o.status != "gone":
            # The backend has other values than the record (a pool resized by hand): diff
            # the manifest against what is really there.
            drift.append(Drift(rec.address, rec.type, "changed", ", ".join(
                f"{k}: {rec.attributes.get(k)!r} → {v!r}" for k, v in changed.items())))
            rec = ResourceRecord(**{**rec.__dict__,
                                    "attributes": {**rec.attributes, **changed}})
            live[rec.address] = rec
        if o.status == "gone" and rec.status != "deleting":
            drift.append(Drift(rec.address, rec.type, "gone", o.reason or "no longer exists"))
        elif o.status == "pending":
            drift.append(Drift(rec.address, rec.type, "pending", o.reason or "pending"))

    for d in discovered:
        if d.id in known_ids or d.idempotency_key in known_keys:
            continue
        if state.is_forgotten(d.id, d.idempotency_key):
            continue  # `state rm`: no longer ours, whatever lineage it carries
        drift.append(Drift(d.address, d.type, "orphan",
                           f"{d.id} carries this state's lineage but is not recorded"))
        orphan_deletes.append(
            Change(
                address=d.address,
                action="delete",
                type=d.type,
                before={"id": d.id},
                reasons=[Reason(Why.ORPHAN)],
                record=ResourceRecord(
                    address=d.address, type=d.type, status="deleting",
                    idempotency_key=d.idempotency_key, id=d.id, meta=d.meta,
                ),
            )
        )
    return live, obs, drift, adopted, orphan_deletes


@dataclass
class Refreshed:
    """What a refresh found: observations of recorded resources and lineage-tagged ones."""

    observed: dict[str, Observation] = field(default_factory=dict)
    discovered: list[Discovered] = field(default_factory=list)
    done: bool = False  # False: --no-refresh, or nothing recorded yet


def refresh_from(provider: Provider, state: StateFile, *, enabled: bool = True) -> Refreshed:
    """The provider I/O of planning: observe what state holds, discover what it lost."""
    if not (enabled and (state.resources or state.serial)):
        return Refreshed()
    return Refreshed(provider.observe(state.resources), provider.discover(state.lineage), True)


def make_plan(
    provider: Provider,
    state: StateFile | None,
    manifest_digest: str,
    *,
    destroy: bool = False,
    refresh: bool = True,
    horizon_hours: float | None = None,
    target: TargetSpec | None = None,
    replace: Sequence[str] = (),
    targets: Sequence[str] = (),
    refresh_only: bool = False,
) -> Plan:
    """Refresh through ``provider``, price, then :func:`diff` (which does no I/O).

    ``target``: the provider's spec at the counts to plan for (default: its own).
    ``replace``, ``targets`` and ``refresh_only`` are Terraform's ``-replace``,
    ``-target`` and ``-refresh-only`` (see :mod:`scalable.planning.surgery`).
    """
    surgery.check_modes(destroy=destroy, refresh=refresh, refresh_only=refresh_only,
                        replace=replace)
    target = target or provider.target
    state = state or StateFile(target=target.name, provider=target.provider)
    found = refresh_from(provider, state, enabled=refresh)
    resolved = _resolve(state, found.observed, found.discovered, found.done)
    desired = [] if destroy else provider.desired(target)
    known = [*(s.address for s in desired), *(r.address for r in state.resources)]
    surgery.check_addresses("--replace", replace, known)
    surgery.check_addresses("--only", targets, known)
    prices = _prices(provider, desired, resolved[0].values())
    plan = diff(
        state, resolved, desired, prices,
        target=target.name, provider=target.provider, manifest_digest=manifest_digest,
        destroy=destroy, updatable=provider.updatable,
        horizon_hours=horizon_hours or provider.horizon_hours(),
        replace=frozenset(replace),
    )
    if not destroy:  # capacity a cap holds back, arrays: the provider's words
        plan.cost.notes.extend(n for n in provider.plan_notes() if n not in plan.cost.notes)
        plan.groups = [group_summary(g) for g in target.groups]
    if refresh_only:
        return refresh_only_plan(plan, state, resolved)
    plan.replace = list(replace)
    return surgery.narrow(plan, state, targets)


def group_summary(g: GroupSpec) -> dict[str, Any]:
    """A group as the plan shows it: tags, workers, GPUs, and what they run in."""
    c = g.container
    return {"name": g.name, "tags": list(g.tags), "workers": g.count,
            "maximum": g.maximum, "gpus": g.gpus, "gpu_type": g.gpu_type,
            "container": c.summary() if c is not None and c.enabled else None}


def refresh_only_plan(plan: Plan, state: StateFile, resolved: Resolved) -> Plan:
    """The plan's drift as state edits only: values changed outside scalable are taken,
    what is gone is forgotten, what an interrupted apply made is adopted; no change to
    capacity (orphans stay where they are: a normal plan deletes them)."""
    live, obs, _drift, _adopted, _orphans = resolved
    recorded = {r.address: r for r in state.resources}
    plan.refresh_only = True
    plan.changes = []
    plan.forget = [a for a, o in obs.items() if o.status == "gone"]
    adopted = {r.address for r in plan.adopted}
    plan.refreshed = [
        rec for a, rec in live.items()
        if a not in adopted and a not in plan.forget and a in recorded
        and rec.attributes != recorded[a].attributes
    ]
    plan.cost.hourly_after = plan.cost.hourly_now
    return plan


def _price_key(spec: ResourceSpec) -> str:
    # Prices depend on what a resource is, not where it sits: many share one lookup.
    return f"{spec.type}/{spec.group}/{spec.is_scheduler}/{sorted(spec.attributes.items())}"


def _prices(
    provider: Provider, desired: Sequence[ResourceSpec], live: Iterable[ResourceRecord]
) -> dict[str, Price]:
    """Each distinct resource shape priced once, keyed by :func:`_price_key`."""
    out: dict[str, Price] = {}
    for spec in [*desired, *(spec_of(r) for r in live)]:
        key = _price_key(spec)
        if key not in out:
            out[key] = provider.price(spec)
    return out


def diff(
    state: StateFile,
    resolved: Resolved,
    desired: Sequence[ResourceSpec],
    prices: dict[str, Price],
    *,
    target: str,
    provider: str,
    manifest_digest: str,
    destroy: bool,
    updatable: Callable[[dict[str, Any], dict[str, Any]], bool],
    horizon_hours: float | None,
    replace: frozenset[str] = frozenset(),
) -> Plan:
    """The plan from refreshed records and desired resources: a pure function."""
    live, obs, drift, adopted, orphans = resolved
    changes = list(orphans)
    after_price = {spec.address: prices[_price_key(spec)] for spec in desired}
    before_price = {rec.address: prices[_price_key(spec_of(rec))] for rec in live.values()}
    want_counts = Counter(r.group for r in desired if r.group)
    have_counts = Counter(r.group for r in live.values() if r.group and r.status != "deleting")
    scheduler_new = False
    unknown: list[str] = []
    for spec in desired:
        rec = live.get(spec.address)
        p_after = after_price[spec.address]
        if not p_after.known:
            unknown.append(f"{spec.address} ({p_after.note or 'no price'})")
        action: Action = "no-op"
        reasons: list[Reason] = []
        hourly_before: float | None = 0.0
        if rec is None:
            action = "create"
            if spec.group and have_counts[spec.group] < want_counts[spec.group]:
                reasons.append(Reason(Why.GROUP_RESIZE, {
                    "group": spec.group, "have": have_counts[spec.group],
                    "want": want_counts[spec.group]}))
        else:
            o = obs.get(spec.address, Observation("alive"))
            hourly_before = before_price[rec.address].hourly if o.status != "gone" else 0.0
            if rec.status == "deleting":
                action = "create"
                reasons.append(Reason(Why.RECREATE_INTERRUPTED))
            elif o.status == "gone":
                action = "create"
                reasons.append(Reason(Why.RECREATE_GONE, {"reason": o.reason}))
            elif rec.attributes != spec.attributes:
                action = "update" if updatable(rec.attributes, spec.attributes) else "replace"
                reasons.append(_changes(rec.attributes, spec.attributes))
            elif scheduler_new and SCHEDULER in spec.depends_on:
                action = "replace"
                reasons.append(Reason(Why.SCHEDULER_REPLACED))
            if any(surgery.matches(spec.address, r) for r in replace) and action != "create":
                action = "replace"
                reasons.append(Reason(Why.REPLACE_REQUESTED))
        if spec.is_scheduler and action in ("create", "replace") and rec is not None:
            scheduler_new = True
        changes.append(Change(
            address=spec.address, action=action, type=spec.type, group=spec.group,
            before=rec.attributes if rec is not None else None, after=spec.attributes,
            reasons=reasons, hourly_before=hourly_before, hourly_after=p_after.hourly,
            resource=spec, record=rec,
        ))

    wanted = {s.address for s in desired}
    for rec in live.values():
        if rec.address in wanted:
            continue
        o = obs.get(rec.address, Observation("alive"))
        facts: dict[str, Any] = {"gone": o.reason} if o.status == "gone" else {}
        why = Why.DESTROY_REQUESTED if destroy else Why.NOT_IN_MANIFEST
        if rec.group and not destroy and want_counts[rec.group] < have_counts[rec.group]:
            why = Why.GROUP_SHRINK
            facts.update(group=rec.group, have=have_counts[rec.group],
                         want=want_counts[rec.group])
        changes.append(
            Change(
                address=rec.address, action="delete", type=rec.type, group=rec.group,
                before=rec.attributes, after=None, reasons=[Reason(why, facts)],
                hourly_before=before_price[rec.address].hourly if o.status != "gone" else 0.0,
                hourly_after=0.0, record=rec,
            )
        )

    return Plan(
        target=target,
        provider=provider,
        lineage=state.lineage if state.serial else None,
        serial=state.serial,
        manifest_digest=manifest_digest,
        destroy=destroy,
        changes=_ordered(changes),
        drift=drift,
        cost=_cost(live, obs, desired, before_price, after_price, unknown, destroy,
                   horizon_hours),
        adopted=adopted,
    )


def _ordered(changes: list[Change]) -> list[Change]:
    """Scheduler first, then by group and index, so the output reads naturally."""
    return sorted(changes, key=lambda c: addrs.sort_key(c.address))


def _cost(
    live: dict[str, ResourceRecord],
    obs: dict[str, Observation],
    desired: Sequence[ResourceSpec],
    before_price: dict[str, Price],
    after_price: dict[str, Price],
    unknown: list[str],
    destroy: bool,
    horizon: float | None,
) -> Cost:
    now: float | None = 0.0
    for rec in live.values():
        if obs.get(rec.address, Observation("alive")).status == "gone":
            continue
        p = before_price[rec.address]
        now = None if now is None or p.hourly is None else now + p.hourly
    after: float | None = 0.0
    worst: float | None = 0.0
    best: float | None = 0.0
    cores = nodes = 0.0
    notes: list[str] = []
    ranges: dict[str, PriceRange] = {}
    by_group: dict[str, float | None] = {}
    for spec in desired:
        p = after_price[spec.address]
        after = None if after is None or p.hourly is None else after + p.hourly
        top, low = p.hourly_max, p.hourly_min
        worst = None if worst is None or top is None else worst + top
        best = None if best is None or low is None else best + low
        if p.choices:
            group = spec.group or spec.address
            r = ranges.setdefault(group, PriceRange(group, 0, list(p.choices)))
            r.resources += 1
        group_of = _cost_group(spec)
        if group_of is not None:
            so_far = by_group.get(group_of, 0.0)
            by_group[group_of] = (None if so_far is None or p.hourly is None
                                  else so_far + p.hourly)
        cores += p.cores
        nodes += p.nodes
        if p.estimate and p.note and p.note not in notes:
            notes.append(p.note)
        if p.source and f"prices: {p.source}" not in notes and p.hourly:
            notes.append(f"prices: {p.source}")
    return Cost(
        hourly_now=now,
        hourly_after=0.0 if destroy else after,
        horizon_hours=horizon,
        unknown=unknown,
        notes=notes,
        core_hours_after=cores * horizon if horizon else 0.0,
        by_group={} if destroy else by_group,
        node_hours_after=nodes * horizon if horizon else 0.0,
        hourly_after_max=None if destroy or not ranges else worst,
        hourly_after_min=None if destroy or not ranges else best,
        ranges=[] if destroy else list(ranges.values()),
    )


def _cost_group(spec: ResourceSpec) -> str | None:
    """The worker group a resource's price belongs to: its workers, or its node pool."""
    if spec.group is not None:
        return spec.group
    a = addrs.parse(spec.address)
    return a.name if a is not None and a.kind == addrs.NODE_POOL else None
