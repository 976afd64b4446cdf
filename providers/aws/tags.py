"""How scalable marks what it creates on AWS, and how it finds it again.

Every resource carries the state's lineage, the target, its address and the create's
idempotency key. ECS tag values may not contain ``[`` or ``]`` (allowed: letters,
digits, spaces and ``+ - = . _ : / @``), so addresses are written ``workers.default/3``
there and read back as ``workers.default[3]``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

TAG_LINEAGE = "scalable:lineage"
TAG_TARGET = "scalable:target"
TAG_PROJECT = "scalable:project"
TAG_ADDRESS = "scalable:address"
TAG_KEY = "scalable:key"
MANAGED_BY = "scalable:managed-by"

_INDEX = re.compile(r"\[(\d+)\]")
_SLASH_INDEX = re.compile(r"/(\d+)(?=$|-)")


def encode(value: str) -> str:
    """``workers.default[3]`` → ``workers.default/3`` (ECS-safe)."""
    return _INDEX.sub(r"/\1", value)


def decode(value: str) -> str:
    """The inverse of :func:`encode`."""
    return _SLASH_INDEX.sub(r"[\1]", value)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def client_token(key: str, suffix: str = "") -> str:
    """An EC2 ClientToken (≤ 64 ASCII characters) derived from an idempotency key."""
    return f"scalable-{_digest(key + suffix)[:40]}"


def started_by(key: str) -> str:
    """ECS ``startedBy`` (≤ 36 characters: letters, digits, - and _) from a key."""
    return f"scalable-{_digest(key)[:27]}"


def resource_tags(
    *, lineage: str, target: str, project: str, address: str, key: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    tags = dict(extra or {})
    tags.update({
        "Name": f"scalable-{project}-{target}-{address}",
        TAG_LINEAGE: lineage,
        TAG_TARGET: target,
        TAG_PROJECT: project,
        TAG_ADDRESS: address,
        TAG_KEY: key,
        MANAGED_BY: "scalable",
    })
    return tags


def ec2_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def ecs_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": encode(v)} for k, v in tags.items()]


def from_ec2(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def from_ecs(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["key"]: decode(t["value"]) for t in tags or []}
