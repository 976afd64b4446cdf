"""The provider contract: one small class per backend over this base, registered by name.

A provider turns a target's spec into the resources it needs (``desired``), and then
creates, observes, discovers and deletes them. It knows nothing of the CLI, the plan
renderer or the state file's layout: it receives records and returns plain results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from scalable.addrs import SCHEDULER
from scalable.errors import ScalableError
from scalable.hooks import Hook, StderrHook
from scalable.manifest.schema import GroupConfig, TargetConfig
from scalable.registry import BUILTIN, provider_class

if TYPE_CHECKING:
    from scalable.pricing.estimator import Price
    from scalable.spec import TargetSpec
    from scalable.state.model import ResourceRecord

ObservedStatus = Literal["alive", "pending", "gone"]


class ProviderError(ScalableError):
    """A backend refused or failed; the message is the backend's own where it has one."""


@dataclass(frozen=True)
class ResourceSpec:
    """One desired resource, provider-neutral enough for the planner to diff.

    ``attributes`` are what the user asked for: a change in any of them is a change in
    the plan (replace, or update in place when the provider says it can).
    ``worker_names`` are the Dask worker names this resource will register, so the
    engine can tell when it is ready.
    """

    address: str
    type: str
    attributes: dict[str, Any]
    group: str | None = None
    worker_names: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()

    @property
    def is_scheduler(self) -> bool:
        return self.address == SCHEDULER


@dataclass
class Observation:
    """What a refresh found for one recorded resource."""

    status: ObservedStatus
    reason: str = ""
    # Extra facts worth showing (Slurm's expected start time, a node, an AWS state).
    details: dict[str, Any] = field(default_factory=dict)
    # Recorded attributes as the backend has them now, where it can tell (a node pool's
    # node_count, a StatefulSet's replicas): a difference is drift, planned back.
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Discovered:
    """A resource tagged with this state's lineage that the state may not hold."""

    address: str
    type: str
    id: str
    idempotency_key: str
    meta: dict[str, Any] = field(default_factory=dict)
    status: ObservedStatus = "alive"
    lineage: str = ""  # the lineage it is tagged with (set by discover_all)
    created_at: str | None = None  # ISO time, where the backend tells (sweep's age)
    home: str = ""  # where its state lived, where the backend tells (local: the state dir)


@dataclass
class CreateContext:
    """What a create call needs to know beyond the resource itself."""

    lineage: str
    idempotency_key: str
    target: str
    project: str
    # Outputs known so far (the scheduler's address once it exists).
    outputs: dict[str, str] = field(default_factory=dict)
    # The target at the counts this apply runs (adaptive groups at their current size).
    spec: TargetSpec | None = None


@dataclass
class Created:
    """The result of a create: the backend's id, facts to keep in state, outputs."""

    id: str
    meta: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


class Provider(ABC):
    """Base class of every backend.

    Subclasses set ``name`` and implement the abstract methods. Every create must be
    idempotent through ``CreateContext.idempotency_key``: a retried create with the same
    key must find and return the first one rather than double the capacity.

    A provider declares its manifest keys: ``target_model`` (a ``TargetConfig`` subclass:
    the target's keys) and ``group_model`` (a ``GroupConfig`` subclass: what a group may
    set for itself). The manifest schema is assembled from them, so a provider installed
    through the ``scalable.providers`` entry point is usable from a manifest.
    """

    name: str = ""
    # Where progress and warnings go; the engine points this at its own hooks.
    hooks: Hook = StderrHook()
    target_model: ClassVar[type[TargetConfig]] = TargetConfig
    group_model: ClassVar[type[GroupConfig]] = GroupConfig

    def __init__(self, target: TargetSpec, workdir: Path) -> None:
        self.target = target
        # .scalable/<target>/: logs, TLS material, scheduler files live here.
        self.workdir = workdir

    # -- planning ---------------------------------------------------------------------
    @abstractmethod
    def desired(self, target: TargetSpec | None = None) -> list[ResourceSpec]:
        """The resources ``target`` asks for, scheduler first.

        ``target`` is this provider's own spec (the default) or a copy of it at other
        counts (adaptive groups at their current size, an objective's choice): the
        provider never has its spec swapped under it.
        """

    def check_config(self) -> None:  # noqa: B027 - optional hook
        """Offline checks of the target's keys beyond the schema (a Fargate size, a
        required key): no network, no processes, no files. ``scalable validate`` runs
        them for every target, so it refuses what ``plan`` would refuse offline."""

    def validate(self) -> None:
        """Preflight before a plan: the offline checks, then the backend (credentials,
        partition/region, quotas). Raise ProviderError."""
        self.check_config()

    def updatable(self, before: dict[str, Any], after: dict[str, Any]) -> bool:
        """Whether a change of attributes can be applied in place (default: no)."""
        return False

    @abstractmethod
    def price(self, resource: ResourceSpec) -> Price:
        """Hourly price of one resource, ``Price.unknown(...)`` when it cannot be found."""

    def startup_seconds(self) -> float:
        """Typical time from create to a registered worker (objective planning)."""
        return 60.0

    def horizon_hours(self) -> float | None:
        """How long capacity is expected to live (walltime, deadline), for cost totals."""
        return None

    def plan_notes(self) -> list[str]:
        """Lines the plan shows under its cost block (capacity held back by a cap…)."""
        return []

    # -- refresh ----------------------------------------------------------------------
    @abstractmethod
    def observe(self, records: Sequence[ResourceRecord]) -> dict[str, Observation]:
        """For each record (by address): alive, pending or gone, with the backend's reason."""

    def discover_all(self) -> list[Discovered] | None:
        """Every live resource scalable created here, of any lineage (``import``, ``sweep``).

        None: this provider cannot list across lineages.
        """
        return None

    @abstractmethod
    def discover(self, lineage: str) -> list[Discovered]:
        """Every live resource tagged with this lineage (the planner compares with state)."""

    # -- changes ----------------------------------------------------------------------
    @abstractmethod
    def create(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        """Create one resource. Must not return before the backend has accepted it."""

    def create_many(
        self, resources: Sequence[ResourceSpec], contexts: Sequence[CreateContext]
    ) -> list[Created | ProviderError]:
        """Create several at once; providers with batch APIs override this."""
        out: list[Created | ProviderError] = []
        for res, ctx in zip(resources, contexts, strict=True):
            try:
                out.append(self.create(res, ctx))
            except ProviderError as exc:
                out.append(exc)
        return out

    def recover_outputs(self, record: ResourceRecord) -> dict[str, str]:
        """Outputs of an adopted resource whose create never returned (the scheduler's
        address after a crash mid-create). Default: none."""
        return {}

    def update(self, record: ResourceRecord, resource: ResourceSpec) -> Created:
        raise ProviderError(f"{self.name} cannot update {record.address} in place")

    def prepare_delete(  # noqa: B027
        self, records: Sequence[ResourceRecord], *,
        scheduler: ResourceRecord | None = None,
    ) -> None:
        """Called once before ``delete`` of each of ``records`` (scheduler excluded).

        A provider may start on all of them at once here, in the order its backend
        prefers (Slurm cancels pending jobs before running ones); ``delete`` still
        follows for each and must succeed on what is already gone. ``scheduler``: the
        scheduler's record when this run deletes it too (after ``records``); a provider
        whose scheduler closes its remaining workers gracefully may stop it now as well.
        """

    @abstractmethod
    def delete(self, record: ResourceRecord) -> None:
        """Delete one resource; deleting what is already gone succeeds."""

    def roster_file(self) -> Path | None:
        """A file on this machine where the scheduler lists its workers as they register
        (``scalable.roster``), read by ``apply`` instead of connecting a Client; None:
        ask the scheduler."""
        return None

    def join_material(self) -> list[Path]:
        """Files this machine must hold to add capacity to a scheduler that already runs.

        With TLS: the target's CA and the node and client certificates and keys, made by
        the first apply into ``.scalable/<target>/tls/``. Without them a provider would
        make a new CA, and workers signed by it could never join the running scheduler.
        """
        if not self.target.tls:
            return []
        from scalable.tls import tls_files

        f = tls_files(self.workdir / "tls")
        return [f.ca_file, f.node_cert, f.node_key, f.client_cert, f.client_key]

    def client_security(self, outputs: dict[str, str]) -> Any | None:
        """A ``distributed.security.Security`` for clients of this target, or None."""
        from scalable.tls import security_from_outputs  # a client's concern, not plan's

        return security_from_outputs(outputs)


# -- registry: moved to scalable.registry (the manifest needs it below the providers) --
__all__ = ["BUILTIN", "provider_class"]
