"""Fargate: an ECS cluster, one task definition per role, one task per scheduler/worker.

Sizes are checked at plan time against Fargate's valid CPU/memory pairs. Each task is
started by its own ``RunTask`` call (``count=1``) because every worker needs its own name,
tags and idempotency key, which ``count>1`` would share; creates go out ten calls at a
time (see ``AwsProvider.create_many``). A retried create first looks for a task started
with the same ``startedBy`` (derived from the idempotency key) and passes the key as
``clientToken``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from scalable.providers.aws.session import aws_errors, error_code
from scalable.providers.aws.tags import (
    TAG_KEY,
    TAG_LINEAGE,
    client_token,
    ecs_tags,
    from_ecs,
    started_by,
)
from scalable.providers.base import Observation, ProviderError

CONTAINER = "dask"
PENDING = {"PROVISIONING", "PENDING", "ACTIVATING"}
GONE = {"DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED", "DELETED"}
DEFAULT_CPU = 1.0
DEFAULT_MEMORY_MIB = 4096

# vCPU → (lowest MiB, highest MiB, step MiB): Fargate's valid task sizes (Linux).
FARGATE_SIZES: dict[float, tuple[int, int, int]] = {
    0.25: (512, 2048, 512),
    0.5: (1024, 4096, 1024),
    1.0: (2048, 8192, 1024),
    2.0: (4096, 16384, 1024),
    4.0: (8192, 30720, 1024),
    8.0: (16384, 61440, 4096),
    16.0: (32768, 122880, 8192),
}


def valid_memory(cpu: float) -> list[int]:
    lo, hi, step = FARGATE_SIZES[cpu]
    values = list(range(lo, hi + 1, step))
    if cpu == 0.25:
        values = [512, 1024, 2048]
    return values


def _gib(mib: int) -> str:
    return f"{mib / 1024:g} GiB"


def check_size(cpu: float, memory_mib: int, where: str) -> None:
    """Raise a ProviderError naming the valid choices if Fargate has no such task size."""
    if cpu not in FARGATE_SIZES:
        raise ProviderError(
            f"{where}: Fargate has no task with {cpu:g} vCPU",
            hint="cpu must be one of " + ", ".join(f"{c:g}" for c in FARGATE_SIZES),
        )
    choices = valid_memory(cpu)
    if memory_mib not in choices:
        lo, hi, step = FARGATE_SIZES[cpu]
        steps = ", ".join(_gib(m) for m in choices) if len(choices) <= 4 else (
            f"{_gib(lo)} to {_gib(hi)} in {_gib(step)} steps")
        raise ProviderError(
            f"{where}: Fargate has no {cpu:g} vCPU task with {_gib(memory_mib)} of memory",
            hint=f"with {cpu:g} vCPU, memory must be {steps}",
        )


# -- cluster -----------------------------------------------------------------------------

def create_cluster(ecs: Any, name: str, tags: dict[str, str]) -> dict[str, Any]:
    with aws_errors(f"creating ECS cluster {name}"):
        found = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"]
        if found and found[0].get("status") == "ACTIVE":
            owner = from_ecs(found[0].get("tags")).get(TAG_LINEAGE)
            if owner != tags[TAG_LINEAGE]:
                raise ProviderError(f"an ECS cluster named {name} exists and is not this "
                                    "state's", hint="delete it, or rename the target")
            return found[0]
        return ecs.create_cluster(
            clusterName=name,
            capacityProviders=["FARGATE", "FARGATE_SPOT"],
            tags=ecs_tags(tags),
        )["cluster"]


def delete_cluster(ecs: Any, arn: str, timeout: float) -> None:
    """Stop what still runs in it, then delete it (retrying while tasks wind down)."""
    from scalable.providers.aws.network import retry_dependency

    with aws_errors(f"stopping the tasks of {arn}"):
        try:
            arns = _list_tasks(ecs, arn)
        except Exception as exc:
            if error_code(exc) == "ClusterNotFoundException":
                return
            raise
        for task in arns:
            stop_task(ecs, arn, task, "cluster deleted by scalable")

    def attempt() -> None:
        try:
            ecs.delete_cluster(cluster=arn)
        except Exception as exc:
            if error_code(exc) not in ("ClusterNotFoundException",):
                raise

    retry_dependency(attempt, f"deleting ECS cluster {arn}", timeout=timeout,
                     codes=("ClusterContainsTasksException", "ClusterContainsServicesException",
                            "ClusterContainsContainerInstancesException",
                            "UpdateInProgressException"))


def cluster_status(ecs: Any, arns: Sequence[str]) -> dict[str, dict[str, Any]]:
    with aws_errors("reading ECS clusters"):
        found = ecs.describe_clusters(clusters=list(arns), include=["TAGS"])["clusters"]
    return {c["clusterArn"]: c for c in found}


def lineage_clusters(ecs: Any, lineage: str) -> list[dict[str, Any]]:
    """Active clusters tagged with this lineage."""
    return tagged_clusters(ecs, {TAG_LINEAGE: lineage})


def has_tags(tags: list[dict[str, str]] | None, want: dict[str, str]) -> bool:
    """Whether ECS ``tags`` carry every one of ``want`` (values as scalable wrote them)."""
    have = from_ecs(tags)
    return all(have.get(k) == v for k, v in want.items())


def tagged_clusters(ecs: Any, want: dict[str, str]) -> list[dict[str, Any]]:
    """Active clusters scalable created that carry every one of ``want``."""
    out: list[dict[str, Any]] = []
    with aws_errors("looking for ECS clusters of this state"):
        arns = [a for page in ecs.get_paginator("list_clusters").paginate()
                for a in page["clusterArns"] if "/scalable-" in a]
        for i in range(0, len(arns), 100):
            for c in ecs.describe_clusters(clusters=arns[i:i + 100], include=["TAGS"])["clusters"]:
                if c.get("status") == "ACTIVE" and has_tags(c.get("tags"), want):
                    out.append(c)
    return out


# -- task definitions --------------------------------------------------------------------

def register_task_definition(
    ecs: Any, *, family: str, image: str, cpu: float, memory_mib: int, scheduler: bool,
    tags: dict[str, str], execution_role: str | None, log_group: str | None, region: str | None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Register a revision (or return the family's active one made by the same create)."""
    with aws_errors(f"registering task definition {family}"):
        try:
            found = ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
            if from_ecs(found.get("tags")).get(TAG_KEY) == tags[TAG_KEY]:
                return found["taskDefinition"]
        except Exception as exc:
            if error_code(exc) not in ("ClientException",):
                raise
        container: dict[str, Any] = {
            "name": CONTAINER,
            "image": image,
            "essential": True,
            # Memory on the container as well as the task (moto needs it; harmless on AWS).
            "memory": memory_mib,
            "cpu": int(cpu * 1024),
            "stopTimeout": 30,
        }
        if env:  # the group's container env (run_task's overrides add scalable's own)
            container["environment"] = [{"name": k, "value": v} for k, v in env.items()]
        if scheduler:
            container["portMappings"] = [{"containerPort": 8786, "protocol": "tcp"},
                                         {"containerPort": 8787, "protocol": "tcp"}]
        kwargs: dict[str, Any] = {}
        if execution_role:
            kwargs["executionRoleArn"] = execution_role
            if log_group:
                container["logConfiguration"] = {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": log_group, "awslogs-region": region or "",
                                "awslogs-stream-prefix": family},
                }
        return ecs.register_task_definition(
            family=family,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu=str(int(cpu * 1024)),
            memory=str(memory_mib),
            containerDefinitions=[container],
            tags=ecs_tags(tags),
            **kwargs,
        )["taskDefinition"]


def deregister_task_definition(ecs: Any, arn: str) -> None:
    with aws_errors(f"deregistering {arn}"):
        try:
            ecs.deregister_task_definition(taskDefinition=arn)
        except Exception as exc:
            if error_code(exc) not in ("ClientException", "InvalidParameterException"):
                raise
        try:  # newer API: also delete the INACTIVE revision so nothing is left listed
            ecs.delete_task_definitions(taskDefinitions=[arn])
        except Exception as exc:
            if error_code(exc) not in ("ClientException", "InvalidParameterException",
                                       "UnsupportedOperation"):
                raise


def task_definition_status(ecs: Any, arn: str) -> str | None:
    with aws_errors(f"reading {arn}"):
        try:
            return str(ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
                       ["status"])
        except Exception as exc:
            if error_code(exc) == "ClientException":
                return None
            raise


def lineage_task_definitions(ecs: Any, family_prefix: str, lineage: str) -> list[dict[str, Any]]:
    return tagged_task_definitions(ecs, family_prefix, {TAG_LINEAGE: lineage})


def tagged_task_definitions(ecs: Any, family_prefix: str,
                            want: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with aws_errors("looking for task definitions of this state"):
        families = [f for page in ecs.get_paginator("list_task_definition_families").paginate(
            familyPrefix=family_prefix, status="ACTIVE") for f in page["families"]]
        for fam in families:
            try:
                found = ecs.describe_task_definition(taskDefinition=fam, include=["TAGS"])
            except Exception as exc:
                if error_code(exc) == "ClientException":  # no active revision left
                    continue
                raise
            if found["taskDefinition"].get("status") == "ACTIVE" and \
                    has_tags(found.get("tags"), want):
                out.append({**found["taskDefinition"], "tags": found.get("tags", [])})
    return out


# -- tasks -------------------------------------------------------------------------------

def _list_tasks(ecs: Any, cluster: str, **filters: Any) -> list[str]:
    out: list[str] = []
    for status in ("RUNNING", "PENDING") if "desiredStatus" not in filters else ("",):
        kwargs = {"cluster": cluster, **filters}
        if status:
            kwargs["desiredStatus"] = status
        for page in ecs.get_paginator("list_tasks").paginate(**kwargs):
            out.extend(page["taskArns"])
    return list(dict.fromkeys(out))


def tasks_by_starter(ecs: Any, cluster: str) -> dict[str, dict[str, Any]]:
    """Live tasks of a cluster by ``startedBy`` (one listing for a whole batch)."""
    with aws_errors("looking for tasks started by an earlier attempt"):
        arns = _list_tasks(ecs, cluster)
    out: dict[str, dict[str, Any]] = {}
    for t in describe_tasks(ecs, cluster, arns).values():
        if t.get("lastStatus") not in GONE and t.get("startedBy"):
            out.setdefault(str(t["startedBy"]), t)
    return out


def find_task(ecs: Any, cluster: str, key: str) -> dict[str, Any] | None:
    with aws_errors("looking for a task started by an earlier attempt"):
        arns = _list_tasks(ecs, cluster, startedBy=started_by(key))
        if not arns:
            return None
        tasks = ecs.describe_tasks(cluster=cluster, tasks=arns[:100], include=["TAGS"])["tasks"]
    live = [t for t in tasks if t.get("lastStatus") not in GONE]
    return live[0] if live else None


def run_task(
    ecs: Any, *, cluster: str, task_definition: str, key: str, subnets: Sequence[str],
    security_groups: Sequence[str], public_ip: bool, command: list[str],
    environment: list[dict[str, str]], tags: dict[str, str], market: str,
    known: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Start one task (or return the one an earlier attempt started).

    ``known``: :func:`tasks_by_starter` for the cluster, fetched once for a batch.
    """
    found = known.get(started_by(key)) if known is not None else find_task(ecs, cluster, key)
    if found is not None:
        return found
    base: dict[str, Any] = {
        "cluster": cluster,
        "taskDefinition": task_definition,
        "count": 1,
        "startedBy": started_by(key),
        "networkConfiguration": {"awsvpcConfiguration": {
            "subnets": list(subnets),
            "securityGroups": list(security_groups),
            "assignPublicIp": "ENABLED" if public_ip else "DISABLED",
        }},
        "overrides": {"containerOverrides": [
            {"name": CONTAINER, "command": command, "environment": environment}]},
        "tags": ecs_tags(tags),
        "enableECSManagedTags": True,
    }

    def start(spot: bool, suffix: str) -> dict[str, Any]:
        kwargs = dict(base, clientToken=client_token(key, suffix))
        if spot:
            kwargs["capacityProviderStrategy"] = [{"capacityProvider": "FARGATE_SPOT",
                                                   "weight": 1}]
        else:
            kwargs["launchType"] = "FARGATE"
        return ecs.run_task(**kwargs)

    what = f"starting Fargate task {tags.get('scalable:address', '')}".strip()
    with aws_errors(what):
        resp = start(market != "on-demand", "")
        if not resp.get("tasks") and market == "fallback":
            resp = start(False, "-od")
    if not resp.get("tasks"):
        reasons = "; ".join(f"{f.get('reason')} {f.get('detail', '')}".strip()
                            for f in resp.get("failures", [])) or "no task started"
        raise ProviderError(f"{what}: {reasons}")
    return resp["tasks"][0]


def private_ip(task: dict[str, Any]) -> str | None:
    for att in task.get("attachments", []):
        for d in att.get("details", []):
            if d.get("name") == "privateIPv4Address":
                return str(d["value"])
    return None


def eni_id(task: dict[str, Any]) -> str | None:
    for att in task.get("attachments", []):
        for d in att.get("details", []):
            if d.get("name") == "networkInterfaceId":
                return str(d["value"])
    return None


def describe_tasks(ecs: Any, cluster: str, arns: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    arns = list(arns)
    with aws_errors("reading task states"):
        for i in range(0, len(arns), 100):
            try:
                resp = ecs.describe_tasks(cluster=cluster, tasks=arns[i:i + 100],
                                          include=["TAGS"])
            except Exception as exc:
                if error_code(exc) == "ClusterNotFoundException":
                    return out
                raise
            for t in resp["tasks"]:
                out[t["taskArn"]] = t
    return out


def wait_for_address(ecs: Any, cluster: str, arn: str, timeout: float) -> dict[str, Any]:
    """Poll until the task's network interface has a private IP (or the task stopped)."""
    deadline = time.monotonic() + timeout
    delay = 1.0
    while True:
        task = describe_tasks(ecs, cluster, [arn]).get(arn)
        if task is None:
            raise ProviderError(f"task {arn} vanished while starting")
        if task.get("lastStatus") in GONE:
            raise ProviderError(
                f"task {arn.rsplit('/', 1)[-1]} stopped while starting: "
                f"{task.get('stoppedReason') or task.get('lastStatus')}")
        if private_ip(task):
            return task
        if time.monotonic() > deadline:
            raise ProviderError(f"task {arn} has no network address after {timeout:g}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)


def observation(task: dict[str, Any] | None) -> Observation:
    if task is None:
        return Observation("gone", "the task no longer exists")
    status = str(task.get("lastStatus", ""))
    details = {"state": status, "private_ip": private_ip(task),
               "capacity_provider": task.get("capacityProviderName")}
    if task.get("desiredStatus") == "STOPPED" or status in GONE:
        reason = task.get("stoppedReason") or task.get("stopCode") or status
        return Observation("gone", f"task {status.lower()}: {reason}", details=details)
    if status in PENDING:
        return Observation("pending", f"task is starting ({status.lower()})", details=details)
    return Observation("alive", details=details)


def stop_task(ecs: Any, cluster: str, arn: str, reason: str) -> None:
    with aws_errors(f"stopping task {arn}"):
        try:
            ecs.stop_task(cluster=cluster, task=arn, reason=reason[:255])
        except Exception as exc:
            code = error_code(exc)
            if code in ("ClusterNotFoundException", "InvalidParameterException"):
                return
            if code == "ClientException" and "not found" in str(exc).lower():
                return
            raise


def lineage_tasks(ecs: Any, cluster: str) -> list[dict[str, Any]]:
    with aws_errors("looking for tasks of this state"):
        arns = _list_tasks(ecs, cluster)
    return list(describe_tasks(ecs, cluster, arns).values())
