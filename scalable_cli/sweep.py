"""``scalable sweep``: capacity scalable created that no reachable state holds.

Lost state (a CI runner's workspace gone, a state file deleted) leaves workers running
and billing. Every provider tags what it creates with the state's lineage; a sweep asks
each target's provider for everything scalable created (``discover_all``) and keeps what
carries a lineage no state of this manifest has. Resources of a reachable lineage are
left alone even when unrecorded: those are a plan's orphans, deleted under that state's
lock by the next apply (an apply in progress must not be raced).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from scalable.addrs import CONTROLLER, SCHEDULER
from scalable.providers.base import Discovered, Provider, ResourceSpec
from scalable.state.model import ResourceRecord


@dataclass
class Lost:
    found: Discovered
    provider: Provider
    target: str
    age_seconds: float | None
    hourly_usd: float | None  # the manifest's price for this kind of resource

    @property
    def cost_so_far(self) -> float | None:
        if self.age_seconds is None or self.hourly_usd is None:
            return None
        return self.hourly_usd * self.age_seconds / 3600

    def record(self) -> ResourceRecord:
        d = self.found
        return ResourceRecord(
            address=d.address,
            type=d.type,
            status="deleting",
            idempotency_key=d.idempotency_key,
            id=d.id,
            meta=d.meta,
        )

    def to_dict(self) -> dict[str, object]:
        d = self.found
        return {
            "target": self.target,
            "address": d.address,
            "type": d.type,
            "id": d.id,
            "lineage": d.lineage,
            "created_at": d.created_at,
            "age_seconds": self.age_seconds,
            "hourly_usd": self.hourly_usd,
            "cost_so_far_usd": self.cost_so_far,
        }


def _age(created_at: str | None, now: datetime) -> float | None:
    if not created_at:
        return None
    try:
        return max(0.0, (now - datetime.fromisoformat(created_at)).total_seconds())
    except ValueError:
        return None


def _hourly(provider: Provider, found: Discovered) -> float | None:
    """The price of what the manifest would run at that address (same type), if known."""
    like: ResourceSpec | None = next(
        (
            s
            for s in provider.desired()
            if s.type == found.type
            and (
                s.address == found.address
                or s.group
                and found.address.startswith(f"workers.{s.group}[")
            )
        ),
        None,
    )
    if like is None:
        return None
    return provider.price(like).hourly


def find_lost(
    targets: Sequence[tuple[str, Provider]],
    reachable: set[str],
    *,
    lineage: str | None = None,
    older_than: float | None = None,
) -> tuple[list[Lost], list[str]]:
    """Lost resources, and the targets whose provider cannot list across lineages."""
    now = datetime.now(UTC)
    seen: set[tuple[str, str]] = set()
    out: list[Lost] = []
    blind: list[str] = []
    for name, provider in targets:
        found = provider.discover_all()
        if found is None:
            blind.append(f"{name} ({provider.target.provider})")
            continue
        for d in found:
            if (d.type, d.id) in seen or not d.lineage or d.lineage in reachable:
                continue
            if lineage is not None and d.lineage != lineage:
                continue
            age = _age(d.created_at, now)
            if older_than is not None and (age is None or age < older_than):
                continue
            seen.add((d.type, d.id))
            out.append(Lost(d, provider, name, age, _hourly(provider, d)))
    out.sort(key=_delete_order)
    return out, blind


def _delete_order(lost: Lost) -> int:
    """Workers first, then schedulers, then what they stand on (node pools, security
    groups, ECS clusters): the order a destroy deletes in, so no delete waits on another."""
    address = lost.found.address
    if address.startswith("workers"):
        return 0
    if address in (SCHEDULER, CONTROLLER):
        return 1
    return 2
