"""The planner: desired resources vs. recorded state (refreshed through the provider)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from scalable.planning.model import Change, Cost, Drift, Plan
from scalable.pricing.estimator import Price
from scalable.providers.base import Discovered, Observation, Provider, ResourceSpec
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


def _changed_keys(before: dict[str, object], after: dict[str, object]) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [k for k in keys if before.get(k) != after.get(k)]


def _describe_changes(before: dict[str, object], after: dict[str, object]) -> str:
    keys = _changed_keys(before, after)
    return ", ".join(f"{k}: {before.get(k)!r} → {after.get(k)!r}" for k in keys)


def _resolve(
    state: StateFile,
    observed: dict[str, Observation],
    discovered: Sequence[Discovered],
    refreshed: bool,
) -> tuple[dict[str, ResourceRecord], dict[str, Observation], list[Drift], list[ResourceRecord],
           list[Change]]:
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
                reasons=["orphan left by an interrupted apply: not in state, deleting"],
                record=ResourceRecord(
                    address=d.address, type=d.type, status="deleting",
                    idempotency_key=d.idempotency_key, id=d.id, meta=d.meta,
                ),
            )
        )
    return live, obs, drift, adopted, orphan_deletes


def make_plan(
    provider: Provider,
    state: StateFile | None,
    manifest_digest: str,
    *,
    destroy: bool = False,
    refresh: bool = True,
    horizon_hours: float | None = None,
) -> Plan:
    target = provider.target
    state = state or StateFile(target=target.name, provider=target.provider)
    observed: dict[str, Observation] = {}
    discovered: list[Discovered] = []
    refreshed = refresh and bool(state.resources or state.serial)
    if refreshed:
        observed = provider.observe(state.resources)
        discovered = provider.discover(state.lineage)
    live, obs, drift, adopted, changes = _resolve(state, observed, discovered, refreshed)

    desired = [] if destroy else provider.desired()
    prices: dict[str, Price] = {}

    def price(spec: ResourceSpec) -> Price:
        # Prices depend on what a resource is, not where it sits: many share one lookup.
        key = f"{spec.type}/{spec.group}/{spec.is_scheduler}/{sorted(spec.attributes.items())}"
        p = prices.get(key)
        if p is None:
            p = prices[key] = provider.price(spec)
        return p

    after_price = {spec.address: price(spec) for spec in desired}
    before_price = {rec.address: price(spec_of(rec)) for rec in live.values()}
    want_counts = Counter(r.group for r in desired if r.group)
    have_counts = Counter(r.group for r in live.values() if r.group and r.status != "deleting")
    scheduler_new = False
    unknown: list[str] = []
    for spec in desired:
        rec = live.get(spec.address)
        p_after = after_price[spec.address]
        if not p_after.known:
            unknown.append(f"{spec.address} ({p_after.note or 'no price'})")
        change = Change(
            address=spec.address, action="no-op", type=spec.type, group=spec.group,
            after=spec.attributes, hourly_before=0.0, hourly_after=p_after.hourly,
            resource=spec,
        )
        if rec is None:
            change.action = "create"
            change.before = None
            if spec.group and have_counts[spec.group] < want_counts[spec.group]:
                change.reasons.append(
                    f"group {spec.group}: {have_counts[spec.group]} → "
                    f"{want_counts[spec.group]} resources"
                )
        else:
            change.record = rec
            change.before = rec.attributes
            o = obs.get(spec.address, Observation("alive"))
            change.hourly_before = before_price[rec.address].hourly if o.status != "gone" else 0.0
            if o.status == "gone" or rec.status == "deleting":
                change.action = "create"
                change.reasons.append(
                    f"re-create: {o.reason or 'gone'}" if rec.status != "deleting"
                    else "re-create: an earlier destroy of it was interrupted"
                )
            elif rec.attributes != spec.attributes:
                if provider.updatable(rec.attributes, spec.attributes):
                    change.action = "update"
                else:
                    change.action = "replace"
                change.reasons.append(_describe_changes(rec.attributes, spec.attributes))
            elif scheduler_new and "scheduler" in spec.depends_on:
                change.action = "replace"
                change.reasons.append("the scheduler is being replaced")
        if spec.is_scheduler and change.action in ("create", "replace") and rec is not None:
            scheduler_new = True
        changes.append(change)

    wanted = {s.address for s in desired}
    for rec in live.values():
        if rec.address in wanted:
            continue
        o = obs.get(rec.address, Observation("alive"))
        reason = "destroy requested" if destroy else "no longer in the manifest"
        if rec.group and not destroy and want_counts[rec.group] < have_counts[rec.group]:
            reason = (f"group {rec.group}: {have_counts[rec.group]} → "
                      f"{want_counts[rec.group]} resources")
        if o.status == "gone":
            reason += f" (already gone: {o.reason})"
        changes.append(
            Change(
                address=rec.address, action="delete", type=rec.type, group=rec.group,
                before=rec.attributes, after=None, reasons=[reason],
                hourly_before=before_price[rec.address].hourly if o.status != "gone" else 0.0,
                hourly_after=0.0, record=rec,
            )
        )

    return Plan(
        target=target.name,
        provider=target.provider,
        lineage=state.lineage if state.serial else None,
        serial=state.serial,
        manifest_digest=manifest_digest,
        destroy=destroy,
        changes=_ordered(changes),
        drift=drift,
        cost=_cost(provider, live, obs, desired, before_price, after_price, unknown, destroy,
                   horizon_hours),
        adopted=adopted,
    )


def _ordered(changes: list[Change]) -> list[Change]:
    """Scheduler first, then by group and index, so the output reads naturally."""

    def key(c: Change) -> tuple[int, str, int]:
        if c.address == "scheduler":
            return (0, "", 0)
        base, _, idx = c.address.partition("[")
        try:
            n = int(idx.rstrip("]"))
        except ValueError:
            n = 0
        return (1 if base.startswith("workers.") else 2, base, n)

    return sorted(changes, key=key)


def _cost(
    provider: Provider,
    live: dict[str, ResourceRecord],
    obs: dict[str, Observation],
    desired: list[ResourceSpec],
    before_price: dict[str, Price],
    after_price: dict[str, Price],
    unknown: list[str],
    destroy: bool,
    horizon_override: float | None,
) -> Cost:
    now: float | None = 0.0
    for rec in live.values():
        if obs.get(rec.address, Observation("alive")).status == "gone":
            continue
        p = before_price[rec.address]
        now = None if now is None or p.hourly is None else now + p.hourly
    after: float | None = 0.0
    cores = 0.0
    notes: list[str] = []
    for spec in desired:
        p = after_price[spec.address]
        after = None if after is None or p.hourly is None else after + p.hourly
        cores += p.cores
        if p.estimate and p.note and p.note not in notes:
            notes.append(p.note)
        if p.source and f"prices: {p.source}" not in notes and p.hourly:
            notes.append(f"prices: {p.source}")
    horizon = horizon_override or provider.horizon_hours()
    return Cost(
        hourly_now=now,
        hourly_after=0.0 if destroy else after,
        horizon_hours=horizon,
        unknown=unknown,
        notes=notes,
        core_hours_after=cores * horizon if horizon else 0.0,
    )
