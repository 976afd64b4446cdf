"""``scalable import ADDR ID``: adopt a resource that exists into state (Terraform's import).

The ID is checked against the backend through the provider's ``discover_all`` (the
resources scalable created, of any lineage, with their tags): it must exist, must not be
held by this state already, and must carry this state's lineage unless forced — a
resource of another lineage is managed by another state, and two states deleting one
job is exactly what lineages exist to prevent.
"""

from __future__ import annotations

from dataclasses import dataclass

from scalable import addrs
from scalable.addrs import SCHEDULER
from scalable.errors import ScalableError
from scalable.providers.base import Provider
from scalable.state.model import ResourceRecord, StateFile


@dataclass
class Imported:
    record: ResourceRecord
    foreign_lineage: str | None  # set when --force took another lineage's resource


def import_resource(
    provider: Provider, state: StateFile, address: str, id: str, *, force: bool = False
) -> Imported:
    """Put the resource ``id`` into ``state`` at ``address`` (the caller holds the lock)."""
    if addrs.parse(address) is None:
        raise ScalableError(
            f"Invalid address {address!r}",
            hint="addresses look like scheduler or workers.default[0]",
        )
    spec = next((s for s in provider.desired() if s.address == address), None)
    if spec is None:
        raise ScalableError(
            f"Configuration for import target does not exist: the manifest has no "
            f"resource {address}",
            hint="add it to the manifest (a group's count) before importing it",
        )
    held = state.get(address)
    if held is not None:
        raise ScalableError(
            f"Resource already managed by scalable: {address} is in state (id {held.id})",
            hint=f"`scalable state rm {address}` first to import another object there",
        )
    other = next((r for r in state.resources
                  if r.id is not None and (r.id == id or r.id.rsplit("/", 1)[-1] == id)), None)
    if other is not None:
        raise ScalableError(
            f"Resource already managed by scalable: {id} is in state as {other.address}",
            hint=f"`scalable state mv {other.address} {address}` renames it",
        )
    found = provider.discover_all()
    if found is None:
        raise ScalableError(
            f"the {provider.target.provider} provider cannot look up resources to import"
        )
    # A long id may be given by its last part: a Fargate task's id (not its ARN), a
    # node pool's name (not its path).
    match = next((d for d in found if d.id == id), None) or next(
        (d for d in found if d.id.rsplit("/", 1)[-1] == id), None)
    if match is None:
        raise ScalableError(
            f"Cannot import non-existent remote object: no resource created by scalable "
            f"with id {id!r} is running",
            hint="ids are as `scalable state show` prints them (local: pid:N@START, "
            "Slurm: the job id, EC2: i-…, Fargate: the task id or ARN, GKE: the node "
            "pool's name or path)",
        )
    if match.type != spec.type:
        raise ScalableError(f"{id} is a {match.type}, but {address} is a {spec.type}")
    foreign = match.lineage if match.lineage != state.lineage else None
    if foreign is not None and not force:
        raise ScalableError(
            f"{id} belongs to another state (lineage {foreign}, not {state.lineage})",
            hint="that state still manages it; import it there, or pass --force to take "
            "it over (then `state rm` it from the other state)",
        )
    # The Dask workers it runs carry the names of the address they were started under.
    names = [
        n.replace(address, match.address, 1) if match.address != "?" else n
        for n in spec.worker_names
    ]
    record = ResourceRecord(
        address=address,
        type=spec.type,
        status="ready",
        idempotency_key=match.idempotency_key,
        id=match.id,
        group=spec.group,
        attributes=spec.attributes,
        worker_names=names,
        depends_on=list(spec.depends_on),
        meta=match.meta,
    )
    state.put(record)
    if address == SCHEDULER:
        state.outputs.update(provider.recover_outputs(record))
    return Imported(record, foreign)
