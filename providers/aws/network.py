"""Networking: the VPC and subnets capacity lands in, and the security group we create.

The security group lets the scheduler and workers reach each other (all TCP between
members of the group) and lets Dask clients reach the scheduler's ports (8786, 8787)
from ``allowed_cidrs`` — by default only from the VPC's own CIDR blocks, never
``0.0.0.0/0`` unless the manifest says so. Egress stays open (images, package mirrors,
S3). Deleting it waits for the instances and network interfaces that use it, and
retries ``DependencyViolation`` with backoff.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from scalable.providers.aws.bootstrap import DASHBOARD_PORT, SCHEDULER_PORT
from scalable.providers.aws.session import aws_errors, error_code, translate
from scalable.providers.aws.tags import TAG_KEY, TAG_LINEAGE, ec2_tags, from_ec2
from scalable.providers.base import ProviderError

T = TypeVar("T")
SELF = "self"


def delete_timeout() -> float:
    """How long a delete waits for what still uses a resource (default 15 minutes)."""
    return float(os.environ.get("SCALABLE_AWS_DELETE_TIMEOUT", "900"))


def retry_dependency(
    fn: Callable[[], T], what: str, *, timeout: float | None = None,
    codes: Sequence[str] = ("DependencyViolation",), first_delay: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it stops failing with one of ``codes`` (exponential backoff)."""
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + (delete_timeout() if timeout is None else timeout)
    delay = first_delay
    while True:
        try:
            return fn()
        except ClientError as exc:
            if error_code(exc) not in codes:
                raise translate(exc, what) from None
            if time.monotonic() + delay > deadline:
                err = translate(exc, what)
                raise ProviderError(
                    f"{err.message} (still failing after retries)",
                    hint="something outside scalable may use it; remove that, then run "
                    "`scalable destroy` again",
                ) from None
            sleep(delay)
            delay = min(delay * 2, 30.0)


@dataclass(frozen=True)
class Network:
    vpc_id: str
    vpc_cidrs: tuple[str, ...]
    subnets: tuple[str, ...]
    public: bool  # whether the first subnet gives public IPs on launch


def resolve(ec2: Any, subnets: Sequence[str]) -> Network:
    """The VPC of the given subnets, or the default VPC and its default subnets."""
    with aws_errors("looking up the network"):
        if subnets:
            found = ec2.describe_subnets(SubnetIds=list(subnets))["Subnets"]
            vpcs = {s["VpcId"] for s in found}
            if len(vpcs) != 1:
                raise ProviderError(
                    f"subnets {', '.join(subnets)} are in {len(vpcs)} VPCs",
                    hint="list subnets of one VPC",
                )
            vpc_id = vpcs.pop()
            by_id = {s["SubnetId"]: s for s in found}
            ordered = [by_id[s] for s in subnets if s in by_id]
        else:
            vpcs_found = ec2.describe_vpcs(
                Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
            if not vpcs_found:
                raise ProviderError(
                    "this region has no default VPC",
                    hint="list `subnets:` (of one VPC) in the target",
                )
            vpc_id = vpcs_found[0]["VpcId"]
            ordered = ec2.describe_subnets(
                Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                         {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
            ordered.sort(key=lambda s: s.get("AvailabilityZone", ""))
            if not ordered:
                raise ProviderError(f"the default VPC {vpc_id} has no default subnets",
                                    hint="list `subnets:` in the target")
        vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    cidrs = [a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", [])
             if a.get("CidrBlockState", {}).get("State", "associated") == "associated"]
    if not cidrs and vpc.get("CidrBlock"):
        cidrs = [vpc["CidrBlock"]]
    return Network(
        vpc_id=vpc_id,
        vpc_cidrs=tuple(cidrs),
        subnets=tuple(s["SubnetId"] for s in ordered),
        public=bool(ordered[0].get("MapPublicIpOnLaunch")),
    )


# -- the security group ------------------------------------------------------------------

Rule = tuple[str, int, int]  # (source: cidr or "self", from port, to port)


def wanted_rules(allowed: Sequence[str]) -> set[Rule]:
    rules: set[Rule] = {(SELF, 0, 65535)}
    for cidr in allowed:
        rules.add((cidr, SCHEDULER_PORT, DASHBOARD_PORT))
    return rules


def _current_rules(group: dict[str, Any]) -> set[Rule]:
    rules: set[Rule] = set()
    for perm in group.get("IpPermissions", []):
        if perm.get("IpProtocol") not in ("tcp", "6"):
            continue
        lo, hi = int(perm.get("FromPort", 0)), int(perm.get("ToPort", 65535))
        for r in perm.get("IpRanges", []):
            rules.add((r["CidrIp"], lo, hi))
        for r in perm.get("Ipv6Ranges", []):
            rules.add((r["CidrIpv6"], lo, hi))
        for pair in perm.get("UserIdGroupPairs", []):
            if pair.get("GroupId") == group["GroupId"]:
                rules.add((SELF, lo, hi))
    return rules


def _permission(group_id: str, rule: Rule) -> dict[str, Any]:
    source, lo, hi = rule
    perm: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": lo, "ToPort": hi}
    if source == SELF:
        perm["UserIdGroupPairs"] = [{"GroupId": group_id,
                                     "Description": "Dask scheduler and workers"}]
    elif ":" in source:
        perm["Ipv6Ranges"] = [{"CidrIpv6": source, "Description": "Dask clients"}]
    else:
        perm["IpRanges"] = [{"CidrIp": source, "Description": "Dask clients"}]
    return perm


def describe_group(ec2: Any, group_id: str) -> dict[str, Any] | None:
    with aws_errors(f"describing security group {group_id}"):
        found = ec2.describe_security_groups(
            Filters=[{"Name": "group-id", "Values": [group_id]}])["SecurityGroups"]
    return found[0] if found else None


def ensure_rules(ec2: Any, group_id: str, allowed: Sequence[str]) -> None:
    """Make the group's TCP ingress exactly our rules (adds missing, revokes extra)."""
    group = describe_group(ec2, group_id)
    if group is None:
        raise ProviderError(f"security group {group_id} does not exist")
    want = wanted_rules(allowed)
    have = _current_rules(group)
    with aws_errors(f"updating the ingress rules of {group_id}"):
        extra = sorted(have - want)
        if extra:
            ec2.revoke_security_group_ingress(
                GroupId=group_id, IpPermissions=[_permission(group_id, r) for r in extra])
        missing = sorted(want - have)
        if missing:
            try:
                ec2.authorize_security_group_ingress(
                    GroupId=group_id, IpPermissions=[_permission(group_id, r) for r in missing])
            except Exception as exc:
                if error_code(exc) != "InvalidPermission.Duplicate":
                    raise


def find_group(ec2: Any, key: str) -> dict[str, Any] | None:
    with aws_errors("looking for the security group"):
        found = ec2.describe_security_groups(
            Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [key]}])["SecurityGroups"]
    return found[0] if found else None


def create_group(
    ec2: Any, *, name: str, network: Network, tags: dict[str, str], key: str,
    allowed: Sequence[str],
) -> str:
    """Create (or find, for a retried create) the group, then set its rules."""
    group = find_group(ec2, key)
    if group is None:
        with aws_errors(f"creating security group {name}"):
            try:
                group_id = ec2.create_security_group(
                    GroupName=name,
                    Description="Dask scheduler and workers, managed by scalable",
                    VpcId=network.vpc_id,
                    TagSpecifications=[{"ResourceType": "security-group",
                                        "Tags": ec2_tags(tags)}],
                )["GroupId"]
            except Exception as exc:
                if error_code(exc) != "InvalidGroup.Duplicate":
                    raise
                group_id = _adopt_by_name(ec2, name, network.vpc_id, tags[TAG_LINEAGE])
    else:
        group_id = group["GroupId"]
    ensure_rules(ec2, group_id, allowed)
    return str(group_id)


def _adopt_by_name(ec2: Any, name: str, vpc_id: str, lineage: str) -> str:
    found = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]},
                 {"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]
    if found and from_ec2(found[0].get("Tags")).get(TAG_LINEAGE) == lineage:
        return str(found[0]["GroupId"])
    raise ProviderError(
        f"a security group named {name} already exists in {vpc_id} and is not this state's",
        hint="delete it, or rename the project or target",
    )


def delete_group(ec2: Any, group_id: str) -> None:
    """Wait until no instance uses the group, then delete it (gone already is fine).

    Network interfaces that outlive their users (Fargate tasks release theirs a minute
    or so after stopping) show up as ``DependencyViolation``, retried with backoff.
    """
    deadline = time.monotonic() + delete_timeout()
    delay = 2.0
    while True:
        with aws_errors(f"checking what uses {group_id}"):
            users = ec2.describe_instances(Filters=[
                {"Name": "instance.group-id", "Values": [group_id]},
                {"Name": "instance-state-name",
                 "Values": ["pending", "running", "shutting-down", "stopping", "stopped"]},
            ])["Reservations"]
        busy = [i["InstanceId"] for r in users for i in r["Instances"]]
        if not busy or time.monotonic() + delay > deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 30.0)

    def attempt() -> None:
        try:
            ec2.delete_security_group(GroupId=group_id)
        except Exception as exc:
            if error_code(exc) not in ("InvalidGroup.NotFound", "InvalidGroupId.NotFound"):
                raise

    retry_dependency(attempt, f"deleting security group {group_id}",
                     timeout=max(30.0, deadline - time.monotonic()))
