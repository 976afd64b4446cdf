"""The AWS provider: a Dask scheduler and workers on EC2 instances or Fargate tasks.

Resources (addresses → types):

- ``security_group`` (``aws.security_group``): created unless ``security_groups:`` are
  given; ingress to the scheduler only from ``allowed_cidrs`` (default: the VPC).
- Fargate only: ``ecs_cluster`` (``aws.ecs_cluster``), ``task_definition.scheduler`` and
  ``task_definition.<group>`` (``aws.task_definition``), and ``log_group``
  (``aws.log_group``) when an ``execution_role`` lets tasks write CloudWatch Logs.
- ``scheduler`` and ``workers.<group>[i]``: ``aws.ec2_instance`` or ``aws.fargate_task``.

``depends_on`` orders them: support resources are created before the scheduler and
deleted after it; workers come after the scheduler and go before it.

The scheduler is always on-demand (an interrupted scheduler loses the whole cluster);
``spot:`` applies to workers. Its address is the private IP (workers use that); when
``allowed_cidrs`` are written and the scheduler has a public IP, ``scheduler_address``
is the public one (for clients outside the VPC) and ``scheduler_private_address`` keeps
the private one.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from scalable import addrs
from scalable.addrs import SCHEDULER
from scalable.outputs import DASHBOARD_URL, SCHEDULER_ADDRESS, SCHEDULER_PRIVATE_ADDRESS
from scalable.pricing.estimator import Price
from scalable.providers import containers
from scalable.providers.aws.bootstrap import (
    DASHBOARD_PORT,
    PREEMPTION_CONTAINER,
    PREEMPTION_ENV,
    PREEMPTION_NATIVE,
    SCHEDULER_PORT,
    TlsPems,
    container_command,
    container_environment,
    default_container_image,
    ec2_user_data,
    is_ami,
    packed,
    preemption_source,
    scheduler_dask_args,
    worker_dask_args,
)
from scalable.providers.aws.config import AwsGroup, AwsTarget
from scalable.providers.aws.pricing import ec2_price, fargate_price, free
from scalable.providers.aws.session import AwsSession, aws_errors, configured_region, error_code
from scalable.providers.aws.tags import (
    TAG_ADDRESS,
    TAG_KEY,
    ecs_tags,
    from_ecs,
    resource_tags,
)
from scalable.providers.base import (
    CreateContext,
    Created,
    Discovered,
    Observation,
    Provider,
    ProviderError,
    ResourceSpec,
)
from scalable.providers.commands import worker_names
from scalable.spec import TargetSpec
from scalable.state.model import ResourceRecord

if TYPE_CHECKING:
    from scalable.providers.aws.network import Network
    from scalable.spec import GroupSpec

SG = "aws.security_group"
CLUSTER = "aws.ecs_cluster"
TASK_DEF = "aws.task_definition"
LOG_GROUP = "aws.log_group"
INSTANCE = "aws.ec2_instance"
TASK = "aws.fargate_task"
SUPPORT = (SG, CLUSTER, TASK_DEF, LOG_GROUP)
PARALLEL = 10  # RunInstances / RunTask calls in flight at once
ADDRESS_WAIT = 300.0  # how long a Fargate scheduler may take to get an IP
LOG_RETENTION_DAYS = 7
UPDATABLE = {"ingress_from", "aws_tags"}


def _iso(when: Any) -> str | None:
    """An AWS time (a datetime, or epoch seconds) as ISO 8601 with its offset."""
    if when is None:
        return None
    if isinstance(when, (int, float)):
        return datetime.fromtimestamp(when, UTC).isoformat()
    if isinstance(when, datetime):
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()
    return str(when)


def _safe(text: str) -> str:
    """Letters, digits, - and _ only (ECS cluster and family names)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)


def _digest(values: dict[str, str]) -> str:
    import hashlib
    import json

    text = json.dumps(values, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _keys(g: GroupSpec) -> AwsGroup:
    return g.settings_as(AwsGroup)


class AwsProvider(Provider):
    name = "aws"
    target_model = AwsTarget
    group_model = AwsGroup

    def __init__(self, target: Any, workdir: Any) -> None:
        super().__init__(target, workdir)
        self.cfg: AwsTarget = target.config_as(AwsTarget)
        self._region: str | None = None
        self._region_known = False
        self._session: AwsSession | None = None
        self._lock = threading.Lock()
        self._network: Network | None = None
        self._amis: dict[str, str] = {}
        self._lookups: dict[str, str] = {}
        self._state_types: set[str] = set()
        # Instances / tasks already carrying a batch's keys, fetched once per create_many.
        self._known_instances: dict[str, dict[str, Any]] | None = None
        self._known_tasks: dict[str, dict[str, Any]] | None = None

    # -- plumbing -------------------------------------------------------------------------
    @property
    def region(self) -> str | None:
        if not self._region_known:
            self._region = configured_region(self.cfg.region)
            self._region_known = True
        return self._region

    @property
    def aws(self) -> AwsSession:
        if self._session is None:
            self._session = AwsSession(self.region)
        return self._session

    @property
    def fargate(self) -> bool:
        return self.cfg.launch_type == "fargate"

    @property
    def own_security_group(self) -> bool:
        return not self.cfg.security_groups

    def network(self) -> Network:
        from scalable.providers.aws.network import resolve

        with self._lock:
            if self._network is None:
                self._network = resolve(self.aws.ec2, self.cfg.subnets)
            return self._network

    def image(self) -> str:
        return self.cfg.image or default_container_image()

    def group_image(self, g: GroupSpec) -> str:
        """The image a group's workers run: its container's, else the target's."""
        c = g.container
        return str(c.image) if c is not None and c.image else self.image()

    def _names(self, lineage: str) -> dict[str, str]:
        project, target, short = self.target.project, self.target.name, lineage[:8]
        return {
            "security_group": f"scalable-{project}-{target}-{short}",
            "cluster": _safe(f"scalable-{project}-{target}-{short}"),
            "family_prefix": f"scalable-{short}-",
            "log_group": f"/scalable/{project}/{target}/{short}",
        }

    def _family(self, lineage: str, role: str) -> str:
        return _safe(f"scalable-{lineage[:8]}-{self.target.project}-{self.target.name}-{role}")

    def _fargate_size(self, settings: Any) -> tuple[float, int]:
        from scalable.providers.aws.fargate import DEFAULT_CPU, DEFAULT_MEMORY_MIB

        cpu = settings.get("cpu") if isinstance(settings, dict) else settings.cpu
        mem = settings.get("memory") if isinstance(settings, dict) else settings.memory
        return (float(cpu) if cpu else DEFAULT_CPU,
                int(mem // 2**20) if mem else DEFAULT_MEMORY_MIB)

    # -- planning -------------------------------------------------------------------------
    def desired(self, target: TargetSpec | None = None) -> list[ResourceSpec]:
        target = target or self.target
        cfg = self.cfg
        region = self.region
        out: list[ResourceSpec] = []
        support: list[str] = []
        if self.own_security_group:
            out.append(ResourceSpec(
                address="security_group", type=SG,
                attributes={"region": region, "subnets": list(cfg.subnets),
                            "ingress_from": list(cfg.allowed_cidrs) or ["vpc"],
                            "ports": [SCHEDULER_PORT, DASHBOARD_PORT],
                            "aws_tags": dict(cfg.tags)},
            ))
            support.append("security_group")
        common = {
            "region": region,
            "launch_type": cfg.launch_type,
            "image": self.image(),
            "subnets": list(cfg.subnets),
            "security_groups": list(cfg.security_groups),
            "tls": target.tls,
            "aws_tags": dict(cfg.tags),
        }
        sched_deps = list(support)
        worker_deps: dict[str, list[str]] = {}
        if self.fargate:
            out.append(ResourceSpec(address="ecs_cluster", type=CLUSTER,
                                    attributes={"region": region, "aws_tags": dict(cfg.tags)}))
            sched_deps.append("ecs_cluster")
            td_deps: tuple[str, ...] = ()
            if cfg.execution_role:
                out.append(ResourceSpec(
                    address="log_group", type=LOG_GROUP,
                    attributes={"region": region, "retention_days": LOG_RETENTION_DAYS,
                                "aws_tags": dict(cfg.tags)}))
                td_deps = ("log_group",)
            cpu, mem = self._fargate_size(cfg)
            out.append(self._task_def_spec("scheduler", cpu, mem, td_deps))
            sched_deps.append("task_definition.scheduler")
            for g in target.groups:
                gcpu, gmem = self._fargate_size(g.settings)
                out.append(self._task_def_spec(g.name, gcpu, gmem, td_deps, g))
                worker_deps[g.name] = [*support, "ecs_cluster", f"task_definition.{g.name}"]
            sched_attrs = {"role": "scheduler", **common, "cpu": cpu, "memory_mib": mem,
                           "spot": False, "idle_timeout": self._idle_timeout()}
            sched_type = TASK
        else:
            sched_attrs = {"role": "scheduler", **common, "instance_type": cfg.instance_type,
                           "spot": False, "idle_timeout": self._idle_timeout(),
                           "iam_instance_profile": cfg.iam_instance_profile}
            sched_type = INSTANCE
            for g in target.groups:
                worker_deps[g.name] = list(support)
        out.append(ResourceSpec(address=SCHEDULER, type=sched_type, attributes=sched_attrs,
                                depends_on=tuple(sched_deps)))
        for g in target.groups:
            attrs = self._worker_attributes(g, common)
            processes = int(_keys(g).processes)
            for i in range(g.count):
                addr = addrs.worker(g.name, i)
                out.append(ResourceSpec(
                    address=addr, type=TASK if self.fargate else INSTANCE, group=g.name,
                    attributes=attrs, worker_names=worker_names(addr, processes),
                    depends_on=(SCHEDULER, *worker_deps[g.name]),
                ))
        return out

    def _idle_timeout(self) -> float | None:
        return self.target.idle_timeout

    def _task_def_spec(self, role: str, cpu: float, mem: int,
                       deps: tuple[str, ...], g: GroupSpec | None = None) -> ResourceSpec:
        attrs: dict[str, Any] = {
            "region": self.region, "image": self.group_image(g) if g else self.image(),
            "cpu": cpu, "memory_mib": mem, "execution_role": self.cfg.execution_role,
            "aws_tags": dict(self.cfg.tags)}
        if g is not None and g.container is not None and g.container.env:
            # Names, and a digest of the values (a new value is a new revision); the
            # values themselves stay out of state.
            attrs["container_env"] = sorted(g.container.env)
            attrs["container_env_digest"] = _digest(g.container.env)
        return ResourceSpec(address=f"task_definition.{role}", type=TASK_DEF,
                            attributes=attrs, depends_on=deps)

    def _worker_attributes(self, g: GroupSpec, common: dict[str, Any]) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "role": "worker", **common,
            "spot": _keys(g).spot,
            "processes": int(_keys(g).processes),
            "threads_per_worker": g.threads_per_worker,
            "memory_per_worker": g.memory_per_worker,
            "tags": list(g.tags),
        }
        if g.gpus:  # only then: a CPU group's recorded attributes stay as they were
            attrs.update(gpus=g.gpus, gpu_type=g.gpu_type)
        if g.container is not None:
            attrs["image"] = self.group_image(g)
            attrs["container"] = containers.describe(g.container)
        if self.fargate:
            cpu, mem = self._fargate_size(g.settings)
            attrs.update(cpu=cpu, memory_mib=mem)
        else:
            attrs.update(instance_type=_keys(g).instance_type,
                         iam_instance_profile=self.cfg.iam_instance_profile)
            choices = _keys(g).instance_types
            if choices:
                # The first choice is what `plan` prices; the rest are tried in order when
                # AWS has no capacity for it (what was obtained is in the resource's meta).
                attrs.update(instance_type=str(choices[0]),
                             instance_types=[str(c) for c in choices])
        return attrs

    def check_config(self) -> None:
        from scalable.providers.aws.fargate import check_size

        cfg = self.cfg
        for cidr in cfg.allowed_cidrs:  # the schema checks them too; a spec may be built
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ProviderError(
                    f"target {self.target.name}: allowed_cidrs: {cidr!r} is not a CIDR block",
                    hint="e.g. 10.0.0.0/16 or 203.0.113.7/32",
                ) from None
        for g in self.target.groups:
            self._check_container(g)
        if self.fargate:
            for g in self.target.groups:
                if g.gpus:
                    raise ProviderError(
                        f"target {self.target.name}, group {g.name}: Fargate has no GPUs "
                        f"(gpus: {g.gpus})",
                        hint="use launch_type: ec2 with a GPU instance_type (g5, g6, g4dn…), "
                             "or a GKE target with an accelerator")
            if cfg.image and is_ami(cfg.image):
                raise ProviderError(f"target {self.target.name}: {cfg.image} is an AMI, but "
                                    "Fargate runs container images",
                                    hint="set image: to a container image, or launch_type: ec2")
            if any(g.name == "scheduler" for g in self.target.groups):
                raise ProviderError(f"target {self.target.name}: a Fargate group may not be "
                                    "named 'scheduler' (its task definition would clash)",
                                    hint="rename the group")
            cpu, mem = self._fargate_size(cfg)
            check_size(cpu, mem, f"target {self.target.name} (scheduler)")
            for g in self.target.groups:
                gcpu, gmem = self._fargate_size(g.settings)
                check_size(gcpu, gmem, f"target {self.target.name}, group {g.name}")
        else:
            self._check_gpus()

    def _check_gpus(self) -> None:
        """A GPU group on a type without (enough of the right) GPUs is refused, naming
        the catalogued types that fit (cheapest first)."""
        from scalable.providers.aws.gpus import problem

        for g in self.target.groups:
            if not g.gpus:
                continue
            need = g.gpus * int(_keys(g).processes)
            for t in _keys(g).instance_types or [_keys(g).instance_type]:
                why = problem(str(t), need, g.gpu_type, self.region)
                if why:
                    raise ProviderError(
                        f"target {self.target.name}, group {g.name}: {why}",
                        hint="set the group's instance_type: to one of them "
                             f"({_keys(g).processes} worker(s) × {g.gpus} GPU(s) per instance)")

    def _check_container(self, g: GroupSpec) -> None:
        """EC2 runs a group's image with Docker; Fargate takes an image and env only."""
        c = g.container
        if c is None:
            return
        where = f"target {self.target.name}, group {g.name}"
        if self.fargate:
            if c.runtime not in containers.OCI:
                raise ProviderError(f"{where}: Fargate runs OCI images, not {c.runtime}",
                                    hint="use runtime: docker with an image reference")
            if c.binds:
                raise ProviderError(
                    f"{where}: Fargate tasks have no host paths to bind "
                    f"({next(iter(c.binds))!r})",
                    hint="remove binds: (bake data into the image, or read it from S3), "
                         "or use launch_type: ec2")
            if c.options:
                raise ProviderError(f"{where}: Fargate takes no container runtime options",
                                    hint="remove options:")
        elif c.runtime != "docker":
            raise ProviderError(f"{where}: EC2 workers run their image with Docker, "
                                f"not {c.runtime}", hint="use runtime: docker")
        if c.image and is_ami(c.image):
            raise ProviderError(f"{where}: a group's container image cannot be an AMI "
                                f"({c.image})", hint="set the AMI as the target's image:")

    def validate(self) -> None:
        self.check_config()
        self.aws.check()
        self.network()
        if not self.fargate:
            self._check_instance_types()

    def _check_instance_types(self) -> None:
        from scalable.providers.aws.ec2 import architecture

        types = sorted({self.cfg.instance_type} | {
            str(_keys(g).instance_type) for g in self.target.groups}
            | {str(t) for g in self.target.groups for t in _keys(g).instance_types or ()})
        for g in self.target.groups:
            arches = {architecture(str(t)) for t in _keys(g).instance_types or ()}
            if len(arches) > 1:
                raise ProviderError(
                    f"target {self.target.name}: group {g.name}'s instance_types mix "
                    f"architectures ({', '.join(sorted(arches))})",
                    hint="list alternatives of one architecture (all Graviton, or none): "
                         "they share one image")
        with aws_errors("checking instance types"):
            try:
                self.aws.ec2.describe_instance_types(InstanceTypes=types)
            except Exception as exc:
                if error_code(exc) == "InvalidInstanceType":
                    raise ProviderError(
                        f"target {self.target.name}: unknown instance type among "
                        f"{', '.join(types)} in {self.region}",
                        hint="see `aws ec2 describe-instance-types` for what the region offers",
                    ) from None
                raise

    def updatable(self, before: dict[str, Any], after: dict[str, Any]) -> bool:
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        return bool(changed) and changed <= UPDATABLE

    def price(self, resource: ResourceSpec) -> Price:
        a = resource.attributes
        if resource.type == SG:
            return free("security groups")
        if resource.type == CLUSTER:
            return free("ECS clusters")
        if resource.type == TASK_DEF:
            return free("task definitions")
        if resource.type == LOG_GROUP:
            return free("log groups (ingestion and storage are billed per GB)")
        spot = a.get("spot", False)
        if resource.type == TASK:
            return fargate_price(float(a.get("cpu") or 1), int(a.get("memory_mib") or 2048),
                                 a.get("region"), spot, self.target.pricing)
        if resource.type == INSTANCE:
            first = ec2_price(str(a.get("instance_type")), a.get("region"), spot,
                              self.target.pricing)
            types = [str(t) for t in a.get("instance_types") or ()]
            if len(types) < 2:
                return first
            # `plan` prices the first choice and shows the range the failover may cost.
            choices = tuple((t, ec2_price(t, a.get("region"), spot, self.target.pricing).hourly)
                            for t in types)
            return dataclasses.replace(first, choices=choices)
        return Price.unknown(f"no price for {resource.type}")

    def horizon_hours(self) -> float | None:
        obj = self.target.objectives
        return obj.deadline_hours if obj is not None and obj.deadline_hours else None

    # -- refresh --------------------------------------------------------------------------
    def observe(self, records: Sequence[ResourceRecord]) -> dict[str, Observation]:
        from scalable.providers.aws import ec2 as ec2_ops
        from scalable.providers.aws import fargate as ecs_ops
        from scalable.providers.aws.network import describe_group

        self._state_types = {r.type for r in records}
        out: dict[str, Observation] = {}
        pending = [r for r in records if not r.id]
        for r in pending:
            out[r.address] = Observation("gone", "never created (interrupted apply)")
        recs = [r for r in records if r.id]
        instances = [r for r in recs if r.type == INSTANCE]
        if instances:
            found = ec2_ops.describe_ids(self.aws.ec2, [str(r.id) for r in instances])
            for r in instances:
                out[r.address] = ec2_ops.observation(found.get(str(r.id)))
        tasks = [r for r in recs if r.type == TASK]
        by_cluster: dict[str, list[ResourceRecord]] = {}
        for r in tasks:
            by_cluster.setdefault(str(r.meta.get("cluster", "")), []).append(r)
        for cluster, rs in by_cluster.items():
            found_tasks = ecs_ops.describe_tasks(self.aws.ecs, cluster, [str(r.id) for r in rs])
            for r in rs:
                out[r.address] = ecs_ops.observation(found_tasks.get(str(r.id)))
        for r in recs:
            if r.type == SG:
                group = describe_group(self.aws.ec2, str(r.id))
                out[r.address] = Observation("alive") if group else Observation(
                    "gone", f"security group {r.id} was deleted outside scalable")
            elif r.type == CLUSTER:
                c = ecs_ops.cluster_status(self.aws.ecs, [str(r.id)]).get(str(r.id))
                status = (c or {}).get("status")
                out[r.address] = Observation("alive") if status == "ACTIVE" else Observation(
                    "gone", f"ECS cluster is {str(status or 'missing').lower()}")
            elif r.type == TASK_DEF:
                status = ecs_ops.task_definition_status(self.aws.ecs, str(r.id))
                out[r.address] = Observation("alive") if status == "ACTIVE" else Observation(
                    "gone", f"task definition is {str(status or 'missing').lower()}")
            elif r.type == LOG_GROUP:
                out[r.address] = Observation("alive") if self._log_group_exists(
                    str(r.id)) else Observation("gone", "log group was deleted")
            elif r.address not in out:
                out[r.address] = Observation("alive", "not refreshed")
        return out

    def _log_group_exists(self, name: str) -> bool:
        with aws_errors(f"reading log group {name}"):
            groups = self.aws.logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        return any(g["logGroupName"] == name for g in groups)

    def discover(self, lineage: str) -> list[Discovered]:
        from scalable.providers.aws.tags import TAG_LINEAGE

        return self._find({TAG_LINEAGE: lineage}, self._names(lineage))

    def discover_all(self) -> list[Discovered]:
        """Everything scalable created for this project and target in this region, of
        any lineage (``import``, ``sweep``). The project and target tags bound it: a
        sweep never reaches another manifest's capacity that shares the account."""
        from scalable.providers.aws.tags import TAG_PROJECT, TAG_TARGET

        project, target = self.target.project, self.target.name
        return self._find({TAG_PROJECT: project, TAG_TARGET: target},
                          {"family_prefix": "scalable-",
                           "log_group": f"/scalable/{project}/{target}/"},
                          everything=True)

    def _find(self, want: dict[str, str], names: dict[str, str], *,
              everything: bool = False) -> list[Discovered]:
        """Live resources carrying every tag in ``want``; ``names`` gives the task
        definition family and log group prefixes to list. ``everything``: look for ECS
        resources even when this target is not on Fargate (a sweep after a switch)."""
        from scalable.providers.aws import ec2 as ec2_ops
        from scalable.providers.aws import fargate as ecs_ops
        from scalable.providers.aws.tags import TAG_LINEAGE, from_ec2

        out: list[Discovered] = []
        with aws_errors("looking for security groups scalable created"):
            groups = self.aws.ec2.describe_security_groups(Filters=[
                {"Name": f"tag:{k}", "Values": [v]} for k, v in want.items()
            ])["SecurityGroups"]
        for g in groups:
            tags = from_ec2(g.get("Tags"))
            out.append(Discovered(address=tags.get(TAG_ADDRESS, "security_group"), type=SG,
                                  id=g["GroupId"], idempotency_key=tags.get(TAG_KEY, ""),
                                  meta={"vpc_id": g.get("VpcId")},
                                  lineage=tags.get(TAG_LINEAGE, "")))
        for inst in ec2_ops.tagged(self.aws.ec2, want):
            tags = ec2_ops.tags_of(inst)
            obs = ec2_ops.observation(inst)
            out.append(Discovered(
                address=tags.get(TAG_ADDRESS, "?"), type=INSTANCE, id=inst["InstanceId"],
                idempotency_key=tags.get(TAG_KEY, ""),
                meta={"instance_id": inst["InstanceId"], "region": self.region,
                      "private_ip": inst.get("PrivateIpAddress")},
                status=obs.status, lineage=tags.get(TAG_LINEAGE, ""),
                created_at=_iso(inst.get("LaunchTime")),
            ))
        if everything or self.fargate or self._state_types & {TASK, CLUSTER, TASK_DEF,
                                                              LOG_GROUP}:
            out += self._discover_ecs(want, names, ecs_ops, logs=everything)
        return out

    def _discover_ecs(self, want: dict[str, str], names: dict[str, str], ecs_ops: Any,
                      *, logs: bool = False) -> list[Discovered]:
        from scalable.providers.aws.tags import TAG_LINEAGE

        out: list[Discovered] = []
        for c in ecs_ops.tagged_clusters(self.aws.ecs, want):
            tags = from_ecs(c.get("tags"))
            lineage = tags.get(TAG_LINEAGE, "")
            out.append(Discovered(address=tags.get(TAG_ADDRESS, "ecs_cluster"), type=CLUSTER,
                                  id=c["clusterArn"], idempotency_key=tags.get(TAG_KEY, ""),
                                  meta={"cluster": c["clusterArn"]}, lineage=lineage))
            for t in ecs_ops.lineage_tasks(self.aws.ecs, c["clusterArn"]):
                obs = ecs_ops.observation(t)
                if obs.status == "gone":
                    continue
                ttags = from_ecs(t.get("tags"))
                out.append(Discovered(
                    address=ttags.get(TAG_ADDRESS, "?"), type=TASK, id=t["taskArn"],
                    idempotency_key=ttags.get(TAG_KEY, ""),
                    meta={"cluster": c["clusterArn"], "task_arn": t["taskArn"],
                          "private_ip": ecs_ops.private_ip(t)},
                    status=obs.status, lineage=ttags.get(TAG_LINEAGE, lineage),
                    created_at=_iso(t.get("createdAt")),
                ))
        for td in ecs_ops.tagged_task_definitions(self.aws.ecs, names["family_prefix"], want):
            tags = from_ecs(td.get("tags"))
            out.append(Discovered(address=tags.get(TAG_ADDRESS, "task_definition.?"),
                                  type=TASK_DEF, id=td["taskDefinitionArn"],
                                  idempotency_key=tags.get(TAG_KEY, ""),
                                  meta={"family": td.get("family")},
                                  lineage=tags.get(TAG_LINEAGE, ""),
                                  created_at=_iso(td.get("registeredAt"))))
        with aws_errors("looking for log groups scalable created"):
            groups = self.aws.logs.describe_log_groups(
                logGroupNamePrefix=names["log_group"])["logGroups"] if \
                logs or self.cfg.execution_role or LOG_GROUP in self._state_types else []
            for g in groups:
                tags = self.aws.logs.list_tags_log_group(logGroupName=g["logGroupName"]).get(
                    "tags", {})
                if any(tags.get(k) != v for k, v in want.items()):
                    continue
                made = g.get("creationTime")
                out.append(Discovered(address=tags.get(TAG_ADDRESS, "log_group"), type=LOG_GROUP,
                                      id=g["logGroupName"],
                                      idempotency_key=tags.get(TAG_KEY, ""),
                                      lineage=tags.get(TAG_LINEAGE, ""),
                                      created_at=_iso(made / 1000 if made else None)))
        return out

    # -- creating -------------------------------------------------------------------------
    def _tags(self, resource: ResourceSpec, ctx: CreateContext) -> dict[str, str]:
        tags = resource_tags(lineage=ctx.lineage, target=ctx.target, project=ctx.project,
                             address=resource.address, key=ctx.idempotency_key,
                             extra=self.cfg.tags)
        role = resource.attributes.get("role")
        if role:
            tags["scalable:role"] = str(role)
        return tags

    def _tls(self) -> TlsPems | None:
        if not self.target.tls:
            return None
        from scalable.tls import ensure_tls

        with self._lock:
            files = ensure_tls(self.workdir / "tls")
        return TlsPems.load(files.ca_file, files.node_cert, files.node_key)

    def _scheme(self) -> str:
        return "tls" if self.target.tls else "tcp"

    def _lookup(self, kind: str, lineage: str, find: Callable[[], str | None]) -> str:
        """The id of one of our support resources, cached for this process."""
        key = f"{kind}:{lineage}"
        with self._lock:
            if key in self._lookups:
                return self._lookups[key]
        found = find()
        if not found:
            raise ProviderError(f"this target's {kind} does not exist",
                                hint="run `scalable apply` again: it is created first")
        with self._lock:
            self._lookups[key] = found
        return found

    def _security_groups(self, lineage: str) -> list[str]:
        if not self.own_security_group:
            return list(self.cfg.security_groups)
        from scalable.providers.aws.tags import TAG_LINEAGE

        def find() -> str | None:
            with aws_errors("looking up the security group"):
                found = self.aws.ec2.describe_security_groups(Filters=[
                    {"Name": f"tag:{TAG_LINEAGE}", "Values": [lineage]},
                    {"Name": f"tag:{TAG_ADDRESS}", "Values": ["security_group"]},
                ])["SecurityGroups"]
            return str(found[0]["GroupId"]) if found else None

        return [self._lookup("security group", lineage, find)]

    def _cluster_arn(self, lineage: str) -> str:
        name = self._names(lineage)["cluster"]

        def find() -> str | None:
            with aws_errors(f"looking up ECS cluster {name}"):
                found = self.aws.ecs.describe_clusters(clusters=[name])["clusters"]
            return str(found[0]["clusterArn"]) if found and found[0].get(
                "status") == "ACTIVE" else None

        return self._lookup("ECS cluster", lineage, find)

    def _task_def_arn(self, lineage: str, role: str) -> str:
        family = self._family(lineage, role)

        def find() -> str | None:
            with aws_errors(f"looking up task definition {family}"):
                try:
                    td = self.aws.ecs.describe_task_definition(taskDefinition=family)
                except Exception as exc:
                    if error_code(exc) == "ClientException":
                        return None
                    raise
            return str(td["taskDefinition"]["taskDefinitionArn"])

        return self._lookup(f"task definition {family}", lineage, find)

    def _prepare(self, resources: Sequence[ResourceSpec],
                 contexts: Sequence[CreateContext]) -> None:
        """Resolve shared things once, before threads fan out: the network, clients, and
        what earlier attempts of these creates left (one listing, not one per create)."""
        from scalable.providers.aws.ec2 import find_by_keys
        from scalable.providers.aws.fargate import tasks_by_starter

        if any(r.type in (INSTANCE, TASK, SG) for r in resources):
            self.network()
        keys = [c.idempotency_key for r, c in zip(resources, contexts, strict=True)
                if r.type == INSTANCE]
        if keys:
            self._known_instances = find_by_keys(self.aws.ec2, keys)
        lineages = {c.lineage for r, c in zip(resources, contexts, strict=True)
                    if r.type == TASK}
        if len(lineages) == 1:
            self._known_tasks = tasks_by_starter(self.aws.ecs,
                                                 self._cluster_arn(lineages.pop()))

    def create_many(
        self, resources: Sequence[ResourceSpec], contexts: Sequence[CreateContext]
    ) -> list[Created | ProviderError]:
        """Instances and tasks start ten at a time; support resources one by one."""
        if len(resources) <= 1:
            return super().create_many(resources, contexts)
        try:
            self._prepare(resources, contexts)
        except ProviderError as exc:
            return [exc for _ in resources]

        def one(pair: tuple[ResourceSpec, CreateContext]) -> Created | ProviderError:
            try:
                return self.create(*pair)
            except ProviderError as exc:
                return exc

        try:
            with ThreadPoolExecutor(max_workers=PARALLEL,
                                    thread_name_prefix="scalable-aws") as ex:
                return list(ex.map(one, zip(resources, contexts, strict=True)))
        finally:
            self._known_instances = self._known_tasks = None

    def create(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        if resource.type == SG:
            return self._create_security_group(resource, ctx)
        if resource.type == CLUSTER:
            return self._create_cluster(resource, ctx)
        if resource.type == LOG_GROUP:
            return self._create_log_group(resource, ctx)
        if resource.type == TASK_DEF:
            return self._create_task_definition(resource, ctx)
        if resource.type == INSTANCE:
            return self._create_instance(resource, ctx)
        if resource.type == TASK:
            return self._create_task(resource, ctx)
        raise ProviderError(f"aws cannot create a {resource.type}")

    def _ingress(self, resource: ResourceSpec) -> list[str]:
        wanted = list(resource.attributes.get("ingress_from") or ["vpc"])
        if wanted == ["vpc"]:
            return list(self.network().vpc_cidrs)
        return wanted

    def _create_security_group(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        from scalable.providers.aws.network import create_group

        net = self.network()
        allowed = self._ingress(resource)
        group_id = create_group(
            self.aws.ec2, name=self._names(ctx.lineage)["security_group"], network=net,
            tags=self._tags(resource, ctx), key=ctx.idempotency_key, allowed=allowed,
        )
        with self._lock:
            self._lookups[f"security group:{ctx.lineage}"] = group_id
        return Created(id=group_id, meta={"vpc_id": net.vpc_id, "ingress": allowed})

    def _create_cluster(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        from scalable.providers.aws.fargate import create_cluster

        cluster = create_cluster(self.aws.ecs, self._names(ctx.lineage)["cluster"],
                                 self._tags(resource, ctx))
        with self._lock:
            self._lookups[f"ECS cluster:{ctx.lineage}"] = cluster["clusterArn"]
        return Created(id=cluster["clusterArn"], meta={"name": cluster["clusterName"]})

    def _create_log_group(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        name = self._names(ctx.lineage)["log_group"]
        with aws_errors(f"creating log group {name}"):
            try:
                self.aws.logs.create_log_group(logGroupName=name, tags=self._tags(resource, ctx))
            except Exception as exc:
                if error_code(exc) != "ResourceAlreadyExistsException":
                    raise
            self.aws.logs.put_retention_policy(
                logGroupName=name,
                retentionInDays=int(resource.attributes.get("retention_days",
                                                            LOG_RETENTION_DAYS)))
        return Created(id=name, meta={"name": name})

    def _create_task_definition(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        from scalable.providers.aws.fargate import register_task_definition

        role = resource.address.split(".", 1)[1]
        a = resource.attributes
        family = self._family(ctx.lineage, role)
        c = None if role == "scheduler" else self.target.group(role).container
        env = dict(c.env) if c is not None else {}
        if role != "scheduler":
            # The image has no scalable: the worker's command writes this out as the
            # nannies' preload, so a stopped task retires its workers (fargate-sigterm).
            env[PREEMPTION_ENV] = packed(preemption_source())
        td = register_task_definition(
            self.aws.ecs, family=family, image=str(a["image"]), cpu=float(a["cpu"]),
            env=env,
            memory_mib=int(a["memory_mib"]), scheduler=role == "scheduler",
            tags=self._tags(resource, ctx), execution_role=a.get("execution_role"),
            log_group=self._names(ctx.lineage)["log_group"] if a.get("execution_role") else None,
            region=self.region,
        )
        with self._lock:
            self._lookups[f"task definition {family}:{ctx.lineage}"] = td["taskDefinitionArn"]
        return Created(id=td["taskDefinitionArn"],
                       meta={"family": family, "revision": td.get("revision")})

    # EC2 --------------------------------------------------------------------------------
    def _ami(self, instance_type: str, image: str | None = None, gpu: bool = False
             ) -> tuple[str, str | None]:
        """(AMI id, container image or None for native mode). A GPU worker gets the
        ECS GPU-optimised AMI (NVIDIA driver and container toolkit for ``--gpus``)."""
        from scalable.providers.aws.ec2 import architecture, container_host_ami

        image = image or self.image()
        if is_ami(image):
            return image, None
        arch = architecture(instance_type) + ("-gpu" if gpu else "")
        with self._lock:
            cached = self._amis.get(arch)
        if cached is None:
            cached = container_host_ami(self.aws.ec2, instance_type, gpu=gpu)
            with self._lock:
                self._amis[arch] = cached
        return cached, image

    def _create_instance(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        from scalable.providers.aws.ec2 import Launch, launch_instance, public_ip

        a = resource.attributes
        scheduler = resource.is_scheduler
        instance_type = str(a["instance_type"])
        gpus = int(a.get("gpus") or 0)
        group = None if scheduler else self.target.group(resource.group or "default")
        ami, container = self._ami(instance_type,
                                   self.group_image(group) if group is not None else None,
                                   gpu=gpus > 0)
        tls = self._tls()
        tls_dir = None if tls is None else ("tls" if container is None else "/scalable/tls")
        if scheduler:
            dask_args = scheduler_dask_args(tls_dir=tls_dir, idle_timeout=a.get("idle_timeout"))
            sched_addr = None
        else:
            sched_addr = self._scheduler_for_workers(ctx)
            assert group is not None
            dask_args = worker_dask_args(
                group, name=resource.address, processes=int(a.get("processes", 1)),
                tls_dir=tls_dir,
                preload_nanny=PREEMPTION_NATIVE if container is None else PREEMPTION_CONTAINER)
        user_data = ec2_user_data(
            role="scheduler" if scheduler else "worker", address=resource.address,
            target=self.target.name, dask_args=dask_args, scheduler_address=sched_addr,
            tls=tls, container_image=container,
            env={**self.target.env, **self._preemption_env(a.get("spot", False))}
            if not scheduler else self.target.env,
            preemption=not scheduler,
            gpus=gpus > 0,
            docker_args=containers.oci_flags(group.container) if group is not None else (),
        )
        net = self.network()
        subnet = self._subnet(resource, net)
        launch = Launch(
            image_id=ami, instance_type=instance_type, user_data=user_data,
            security_groups=tuple(self._security_groups(ctx.lineage)),
            subnet=subnet, tags=self._tags(resource, ctx),
            # A target's other subnets (zones) are tried in turn on a capacity error.
            other_subnets=tuple(
                s for s in (net.subnets if self.cfg.subnets and subnet else ())
                if s != subnet),
            key=ctx.idempotency_key,
            market=self._market(a.get("spot", False)),
            iam_instance_profile=a.get("iam_instance_profile"),
            alternatives=tuple(str(t) for t in (a.get("instance_types") or [])[1:]),
        )
        meta = launch_instance(self.aws.ec2, launch, self.region, self._known_instances)
        meta["ami"] = ami
        if container:
            meta["container_image"] = container
        outputs: dict[str, str] = {}
        if scheduler:
            if not meta.get("public_ip"):
                meta["public_ip"] = public_ip(self.aws.ec2, meta["instance_id"])
            outputs = self._scheduler_outputs(meta.get("private_ip"), meta.get("public_ip"))
        return Created(id=meta["instance_id"], meta=meta, outputs=outputs)

    @staticmethod
    def _preemption_env(spot: Any) -> dict[str, str]:
        """Spot workers watch the instance metadata for an interruption notice; every
        worker retires itself gracefully on SIGTERM (see scalable.preemption)."""
        return {"SCALABLE_PREEMPTION_WATCH": "ec2"} if spot in (True, "fallback") else {}

    @staticmethod
    def _market(spot: Any) -> str:
        if spot == "fallback":
            return "fallback"
        return "spot" if spot is True else "on-demand"

    def _subnet(self, resource: ResourceSpec, net: Network) -> str | None:
        if not self.cfg.subnets:
            return net.subnets[0] if resource.is_scheduler and net.subnets else None
        index = 0
        m = re.search(r"\[(\d+)\]$", resource.address)
        if m:
            index = int(m.group(1)) + 1
        return net.subnets[index % len(net.subnets)]

    def _scheduler_for_workers(self, ctx: CreateContext) -> str:
        addr = ctx.outputs.get(SCHEDULER_PRIVATE_ADDRESS) or ctx.outputs.get(
            SCHEDULER_ADDRESS)
        if not addr:
            raise ProviderError("no scheduler address to join")
        return addr

    def _scheduler_outputs(self, private: str | None, public: str | None) -> dict[str, str]:
        if not private:
            raise ProviderError("the scheduler has no private IP address")
        scheme = self._scheme()
        out = {SCHEDULER_PRIVATE_ADDRESS: f"{scheme}://{private}:{SCHEDULER_PORT}"}
        # Clients outside the VPC use the public address only where ingress was opened
        # to them explicitly; otherwise the private one (a client inside the VPC).
        client_ip = public if public and self.cfg.allowed_cidrs else private
        out[SCHEDULER_ADDRESS] = f"{scheme}://{client_ip}:{SCHEDULER_PORT}"
        out[DASHBOARD_URL] = f"http://{client_ip}:{DASHBOARD_PORT}/status"
        if public:
            out["scheduler_public_ip"] = public
        if self.target.tls:
            from scalable.tls import ensure_tls

            out.update(ensure_tls(self.workdir / "tls").outputs())
        return out

    # Fargate ----------------------------------------------------------------------------
    def _create_task(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        from scalable.providers.aws.fargate import eni_id, private_ip, run_task, wait_for_address

        a = resource.attributes
        scheduler = resource.is_scheduler
        tls = self._tls()
        tls_dir = "tls" if tls is not None else None
        if scheduler:
            dask_args = scheduler_dask_args(tls_dir=tls_dir, idle_timeout=a.get("idle_timeout"))
            sched_addr = None
            role = "scheduler"
        else:
            sched_addr = self._scheduler_for_workers(ctx)
            group = self.target.group(resource.group or "default")
            dask_args = worker_dask_args(group, name=resource.address,
                                         processes=int(a.get("processes", 1)), tls_dir=tls_dir,
                                         preload_nanny=PREEMPTION_NATIVE)
            role = group.name
        cluster = self._cluster_arn(ctx.lineage)
        net = self.network()
        task, failover = run_task(
            self.aws.ecs, cluster=cluster, task_definition=self._task_def_arn(ctx.lineage, role),
            key=ctx.idempotency_key, subnets=net.subnets,
            security_groups=self._security_groups(ctx.lineage), public_ip=net.public,
            command=container_command(role="scheduler" if scheduler else "worker",
                                      dask_args=dask_args, tls=tls is not None,
                                      preemption=not scheduler),
            environment=container_environment(
                tls=tls, scheduler_address=sched_addr,
                # A stopped task's SIGTERM is reported as "fargate-sigterm" with ECS's
                # default 30 s stop timeout as the notice (the nannies load the shipped
                # scalable.preemption; docs/guides/resilience.rst).
                extra={**({} if scheduler else {"SCALABLE_PLATFORM": "fargate",
                                                  "SCALABLE_TERMINATION_GRACE": "30"}),
                       **self.target.env}),
            tags=self._tags(resource, ctx), market=self._market(a.get("spot", False)),
            known=self._known_tasks,
        )
        arn = task["taskArn"]
        meta: dict[str, Any] = {"task_arn": arn, "cluster": cluster,
                                "capacity_provider": task.get("capacityProviderName")
                                or task.get("launchType") or "FARGATE"}
        if failover:
            meta["failover"] = failover  # what was obtained instead, and why (report)
        outputs: dict[str, str] = {}
        if scheduler:
            if not private_ip(task):
                task = wait_for_address(self.aws.ecs, cluster, arn, ADDRESS_WAIT)
            meta["private_ip"] = private_ip(task)
            public = self._eni_public_ip(eni_id(task)) if net.public else None
            meta["public_ip"] = public
            outputs = self._scheduler_outputs(meta["private_ip"], public)
        return Created(id=arn, meta=meta, outputs=outputs)

    def _eni_public_ip(self, eni: str | None) -> str | None:
        if not eni:
            return None
        with aws_errors(f"reading network interface {eni}"):
            try:
                found = self.aws.ec2.describe_network_interfaces(
                    NetworkInterfaceIds=[eni])["NetworkInterfaces"]
            except Exception as exc:
                if error_code(exc).startswith("InvalidNetworkInterfaceID"):
                    return None
                raise
        if not found:
            return None
        return found[0].get("Association", {}).get("PublicIp")

    # -- updating and deleting ------------------------------------------------------------
    def update(self, record: ResourceRecord, resource: ResourceSpec) -> Created:
        from scalable.providers.aws.ec2 import set_tags
        from scalable.providers.aws.network import ensure_rules

        before, after = record.attributes, resource.attributes
        meta: dict[str, Any] = {}
        if record.type == SG and before.get("ingress_from") != after.get("ingress_from"):
            allowed = self._ingress(resource)
            ensure_rules(self.aws.ec2, str(record.id), allowed)
            meta["ingress"] = allowed
        if before.get("aws_tags") != after.get("aws_tags"):
            old, new = dict(before.get("aws_tags") or {}), dict(after.get("aws_tags") or {})
            if record.type in (SG, INSTANCE):
                set_tags(self.aws.ec2, str(record.id), old, new)
            elif record.type in (TASK, CLUSTER, TASK_DEF):
                with aws_errors(f"updating the tags of {record.address}"):
                    gone = [k for k in old if k not in new]
                    if gone:
                        self.aws.ecs.untag_resource(resourceArn=record.id, tagKeys=gone)
                    if new:
                        self.aws.ecs.tag_resource(resourceArn=record.id, tags=ecs_tags(new))
            elif record.type == LOG_GROUP:
                with aws_errors(f"updating the tags of {record.address}"):
                    gone = [k for k in old if k not in new]
                    if gone:
                        self.aws.logs.untag_log_group(logGroupName=record.id, tags=gone)
                    if new:
                        self.aws.logs.tag_log_group(logGroupName=record.id, tags=new)
        return Created(id=str(record.id), meta=meta)

    def delete(self, record: ResourceRecord) -> None:
        from scalable.providers.aws import ec2 as ec2_ops
        from scalable.providers.aws import fargate as ecs_ops
        from scalable.providers.aws.network import delete_group, delete_timeout, find_group

        rid = record.id
        if record.type == INSTANCE:
            if not rid:  # an interrupted create: whatever carries its key goes
                found = ec2_ops.find_by_key(self.aws.ec2, record.idempotency_key)
                rid = found["InstanceId"] if found else None
            if rid:
                ec2_ops.terminate(self.aws.ec2, rid)
        elif record.type == SG:
            if not rid:
                found = find_group(self.aws.ec2, record.idempotency_key)
                rid = found["GroupId"] if found else None
            if rid:
                delete_group(self.aws.ec2, rid)
        elif record.type == TASK:
            cluster = str(record.meta.get("cluster") or "")
            if rid and cluster:
                ecs_ops.stop_task(self.aws.ecs, cluster, rid,
                                  f"scalable: {record.address} deleted")
            elif cluster:
                found_task = ecs_ops.find_task(self.aws.ecs, cluster, record.idempotency_key)
                if found_task:
                    ecs_ops.stop_task(self.aws.ecs, cluster, found_task["taskArn"],
                                      f"scalable: {record.address} deleted")
        elif record.type == CLUSTER:
            if rid:
                ecs_ops.delete_cluster(self.aws.ecs, rid, delete_timeout())
        elif record.type == TASK_DEF:
            if rid:
                ecs_ops.deregister_task_definition(self.aws.ecs, rid)
        elif record.type == LOG_GROUP:
            if rid:
                with aws_errors(f"deleting log group {rid}"):
                    try:
                        self.aws.logs.delete_log_group(logGroupName=rid)
                    except Exception as exc:
                        if error_code(exc) != "ResourceNotFoundException":
                            raise
        else:
            raise ProviderError(f"aws cannot delete a {record.type}")
        with self._lock:  # a deleted support resource must be looked up afresh
            self._lookups = {k: v for k, v in self._lookups.items() if v != rid}
