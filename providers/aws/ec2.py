"""EC2 instances: one per scheduler or worker resource.

A create first looks for an instance already tagged with its idempotency key (a create
retried after a crash finds the first one), then calls ``RunInstances`` with a
``ClientToken`` derived from the same key, so even a retry inside botocore never starts
a second instance. Instances terminate on shutdown (``InstanceInitiatedShutdownBehavior``)
and require IMDSv2.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scalable.providers.aws.session import aws_errors, error_code
from scalable.providers.aws.tags import (
    TAG_ADDRESS,
    TAG_KEY,
    TAG_LINEAGE,
    client_token,
    ec2_tags,
    from_ec2,
)
from scalable.providers.base import Observation, ProviderError

LIVE_STATES = ["pending", "running", "stopping", "stopped"]
# Spot capacity errors after which ``spot: fallback`` launches on-demand instead.
SPOT_SHORT = {
    "InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded",
    "InsufficientCapacity", "UnfulfillableCapacity", "InsufficientSpotCapacity",
}
# Capacity errors after which the next of a group's ``instance_types`` is tried.
CAPACITY_SHORT = SPOT_SHORT | {"Unsupported", "InsufficientHostCapacity"}
ECS_AMI_NAME = "al2023-ami-ecs-hvm-*-kernel-6.1-{arch}"
# The ECS GPU-optimised variant: NVIDIA driver and container toolkit (x86_64 only).
ECS_GPU_AMI_NAME = "al2023-ami-ecs-gpu-hvm-*-kernel-6.1-{arch}-ebs"
_GRAVITON = re.compile(r"^[a-z]+\d+[a-z]*g[a-z]*\.", re.IGNORECASE)


def architecture(instance_type: str) -> str:
    """``arm64`` for Graviton families (m7g, c6gn, t4g…), else ``x86_64``."""
    return "arm64" if _GRAVITON.match(instance_type) else "x86_64"


def container_host_ami(ec2: Any, instance_type: str, gpu: bool = False) -> str:
    """The newest Amazon ECS-optimised Amazon Linux 2023 AMI (it has Docker); with
    ``gpu`` its GPU variant."""
    arch = architecture(instance_type)
    pattern = (ECS_GPU_AMI_NAME if gpu else ECS_AMI_NAME).format(arch=arch)
    with aws_errors("looking up the ECS-optimised Amazon Linux AMI"):
        images = ec2.describe_images(
            Owners=["amazon"],
            Filters=[{"Name": "name", "Values": [pattern]},
                     {"Name": "architecture", "Values": [arch]},
                     {"Name": "state", "Values": ["available"]}],
        )["Images"]
    if not images:
        raise ProviderError(
            f"no ECS-optimised Amazon Linux 2023 AMI ({arch}) found in this region",
            hint="set `image: ami-…` to an AMI with Python and dask[distributed] installed",
        )
    newest = max(images, key=lambda i: (i.get("CreationDate", ""), i.get("Name", "")))
    return str(newest["ImageId"])


@dataclass(frozen=True)
class Launch:
    """Everything one RunInstances call needs."""

    image_id: str
    instance_type: str
    user_data: str
    security_groups: tuple[str, ...]
    subnet: str | None
    tags: dict[str, str]
    key: str
    market: str  # "on-demand", "spot" or "fallback"
    iam_instance_profile: str | None = None
    # Further instance types to try, in order, when AWS has no capacity for the first.
    alternatives: tuple[str, ...] = ()
    # Further subnets (zones) to try, in order, when ``subnet`` has no capacity.
    other_subnets: tuple[str, ...] = ()


def _instance_meta(inst: dict[str, Any], region: str | None) -> dict[str, Any]:
    return {
        "instance_id": inst["InstanceId"],
        "region": region,
        "private_ip": inst.get("PrivateIpAddress"),
        "public_ip": inst.get("PublicIpAddress"),
        "market": "spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand",
        "instance_type": inst.get("InstanceType"),
        "availability_zone": inst.get("Placement", {}).get("AvailabilityZone"),
    }


def find_by_keys(ec2: Any, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Live instances carrying any of these idempotency keys, by key (few calls)."""
    out: dict[str, dict[str, Any]] = {}
    keys = list(keys)
    with aws_errors("looking for instances started by an earlier attempt"):
        for i in range(0, len(keys), 200):
            pages = ec2.get_paginator("describe_instances").paginate(Filters=[
                {"Name": f"tag:{TAG_KEY}", "Values": keys[i:i + 200]},
                {"Name": "instance-state-name", "Values": LIVE_STATES},
            ])
            for page in pages:
                for r in page["Reservations"]:
                    for inst in r["Instances"]:
                        out.setdefault(from_ec2(inst.get("Tags")).get(TAG_KEY, ""), inst)
    return out


def find_by_key(ec2: Any, key: str) -> dict[str, Any] | None:
    return find_by_keys(ec2, [key]).get(key)


def _run(ec2: Any, launch: Launch, spot: bool, token: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "ImageId": launch.image_id,
        "InstanceType": launch.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": token,
        "UserData": launch.user_data,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": ec2_tags(launch.tags)},
            {"ResourceType": "volume", "Tags": ec2_tags(launch.tags)},
        ],
    }
    if launch.subnet:
        kwargs["SubnetId"] = launch.subnet
    if launch.security_groups:
        kwargs["SecurityGroupIds"] = list(launch.security_groups)
    if launch.iam_instance_profile:
        profile = launch.iam_instance_profile
        kwargs["IamInstanceProfile"] = (
            {"Arn": profile} if profile.startswith("arn:") else {"Name": profile})
    if spot:
        kwargs["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time",
                            "InstanceInterruptionBehavior": "terminate"},
        }
    return ec2.run_instances(**kwargs)["Instances"][0]


def launch_instance(
    ec2: Any, launch: Launch, region: str | None,
    known: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Start one instance (or return the one an earlier attempt started).

    ``known``: the result of :func:`find_by_keys` for a whole batch, fetched once.
    """
    found = known.get(launch.key) if known is not None else find_by_key(ec2, launch.key)
    if found is not None:
        return _instance_meta(found, region)
    types = [launch.instance_type, *launch.alternatives]
    subnets = [launch.subnet, *launch.other_subnets]
    # The preferred type in every subnet (zone) before the next type: the type is what
    # the user chose by price and shape, the zone rarely matters to a Dask worker.
    choices = [(t, sn) for t in types for sn in subnets]
    what = f"starting {launch.tags.get(TAG_ADDRESS, 'an instance')} ({', '.join(types)})"
    short: list[str] = []

    def label(itype: str, subnet: str | None) -> str:
        return itype if len(subnets) == 1 or subnet is None else f"{itype} in {subnet}"

    with aws_errors(what):
        for n, (itype, subnet) in enumerate(choices):
            one = dataclasses.replace(launch, instance_type=itype, subnet=subnet)
            # Each choice has its own token: a retry of the same choice stays idempotent
            # (the first subnet keeps the tokens of a target with one subnet).
            suffix = "" if n == 0 else f"-{itype}"
            if subnet != launch.subnet:
                suffix += f"-{subnet}"
            try:
                inst = _launch_one(ec2, one, suffix)
            except Exception as exc:
                if error_code(exc) not in CAPACITY_SHORT or len(choices) == 1:
                    raise
                short.append(f"{label(itype, subnet)}: {error_code(exc)}")
                if n + 1 < len(choices):
                    continue
                where = "instance_types" if len(subnets) == 1 else (
                    "instance_types and subnets" if len(types) > 1 else "subnets")
                raise ProviderError(
                    f"no capacity for {launch.tags.get(TAG_ADDRESS, 'an instance')} in any of "
                    f"its {where} ({'; '.join(short)})",
                    hint="add more instance_types, another subnet/zone, or `spot: fallback`; "
                         "what was created is kept",
                ) from None
            meta = _instance_meta(inst, region)
            if inst.get("SubnetId") or subnet:
                meta["subnet"] = inst.get("SubnetId") or subnet
            if short:
                meta["failover"] = short
            return meta
    raise AssertionError("unreachable")  # pragma: no cover


def _launch_one(ec2: Any, launch: Launch, suffix: str) -> dict[str, Any]:
    if launch.market == "on-demand":
        return _run(ec2, launch, spot=False, token=client_token(launch.key + suffix))
    try:
        return _run(ec2, launch, spot=True, token=client_token(launch.key + suffix))
    except Exception as exc:
        if launch.market != "fallback" or error_code(exc) not in SPOT_SHORT:
            raise
        return _run(ec2, launch, spot=False, token=client_token(launch.key + suffix, "-od"))


def describe_ids(ec2: Any, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Instances by id; ids AWS does not know are simply absent (no NotFound error)."""
    out: dict[str, dict[str, Any]] = {}
    ids = list(ids)
    with aws_errors("reading instance states"):
        for i in range(0, len(ids), 200):
            pages = ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": ids[i:i + 200]}])
            for page in pages:
                for r in page["Reservations"]:
                    for inst in r["Instances"]:
                        out[inst["InstanceId"]] = inst
    return out


def public_ip(ec2: Any, instance_id: str) -> str | None:
    inst = describe_ids(ec2, [instance_id]).get(instance_id)
    return inst.get("PublicIpAddress") if inst else None


def observation(inst: dict[str, Any] | None) -> Observation:
    """pending is capacity on its way; stopping, stopped and terminated are gone."""
    if inst is None:
        return Observation("gone", "the instance no longer exists")
    state = inst["State"]["Name"]
    details = {"state": state, "private_ip": inst.get("PrivateIpAddress"),
               "market": "spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand"}
    if state == "running":
        return Observation("alive", details=details)
    if state == "pending":
        return Observation("pending", "instance is starting (pending)", details=details)
    reason = (inst.get("StateReason") or {}).get("Message") or inst.get(
        "StateTransitionReason") or state
    return Observation("gone", f"instance {state}: {reason}", details=details)


def discover(ec2: Any, lineage: str) -> list[dict[str, Any]]:
    """Live instances carrying this lineage's tag."""
    return tagged(ec2, {TAG_LINEAGE: lineage})


def tagged(ec2: Any, tags: dict[str, str]) -> list[dict[str, Any]]:
    """Live instances carrying every one of ``tags``."""
    out: list[dict[str, Any]] = []
    with aws_errors("looking for instances scalable created"):
        pages = ec2.get_paginator("describe_instances").paginate(Filters=[
            *({"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()),
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ])
        for page in pages:
            for r in page["Reservations"]:
                out.extend(r["Instances"])
    return out


def tags_of(inst: dict[str, Any]) -> dict[str, str]:
    return from_ec2(inst.get("Tags"))


def user_data_of(ec2: Any, instance_id: str) -> str:
    """The user data an instance was started with (for tests and debugging)."""
    with aws_errors(f"reading the user data of {instance_id}"):
        raw = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    value = raw.get("UserData", {}).get("Value", "")
    return base64.b64decode(value).decode() if value else ""


def terminate(ec2: Any, instance_id: str) -> None:
    """Terminate (does not wait); an instance AWS no longer knows counts as done."""
    with aws_errors(f"terminating {instance_id}"):
        try:
            ec2.terminate_instances(InstanceIds=[instance_id])
        except Exception as exc:
            if error_code(exc) not in ("InvalidInstanceID.NotFound",
                                       "InvalidInstanceID.Malformed"):
                raise


def set_tags(ec2: Any, resource_id: str, before: dict[str, str], after: dict[str, str]) -> None:
    """Bring a resource's user tags from ``before`` to ``after`` (ours are untouched)."""
    with aws_errors(f"updating the tags of {resource_id}"):
        gone = [k for k in before if k not in after]
        if gone:
            ec2.delete_tags(Resources=[resource_id], Tags=[{"Key": k} for k in gone])
        if after:
            ec2.create_tags(Resources=[resource_id], Tags=ec2_tags(after))
