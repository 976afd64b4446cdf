"""Resource addresses: the one place that builds, parses and orders them.

An address names a resource inside one target's state, the way Terraform's
``aws_instance.web[3]`` does: ``scheduler``, ``controller`` (the adaptive agent),
``workers.<group>[<i>]`` (a job or process hosting one or more workers of a group),
``workers.<group>`` (a whole group as one resource: a GKE StatefulSet), and helpers a
provider needs beside them (``node_pool.<group>``, ``security_group``,
``task_definition.<role>``).

Records, plans and state files keep addresses as plain strings (what the JSON holds);
this module is how code makes and reads them, so the grammar lives in one place.
Standard library only: the scheduler plugin and the Slurm job script builder use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

SCHEDULER: Final = "scheduler"
CONTROLLER: Final = "controller"
WORKERS: Final = "workers"
NODE_POOL: Final = "node_pool"
TASK_DEFINITION: Final = "task_definition"

# kind[.name][[index]]; names are group names (letters, digits, '_' and '-').
_GRAMMAR = re.compile(
    r"(?P<kind>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:\.(?P<name>[A-Za-z0-9_-]+))?"
    r"(?:\[(?P<index>\d+)\])?"
)
# A worker's Dask name starts with its host resource's address (``workers.default[0]``,
# or ``workers.default[0]-2`` when the resource hosts several workers).
_WORKER_NAME = re.compile(r"^workers\.([^\[\]]+)\[")


@dataclass(frozen=True)
class Address:
    """A parsed address: ``kind``, optional ``name`` (a group, a role), optional index."""

    kind: str
    name: str | None = None
    index: int | None = None

    def __str__(self) -> str:
        out = self.kind
        if self.name is not None:
            out += f".{self.name}"
        if self.index is not None:
            out += f"[{self.index}]"
        return out

    @classmethod
    def parse(cls, text: str) -> Address:
        """``workers.gpu[3]`` → ``Address("workers", "gpu", 3)``; ValueError if malformed."""
        m = _GRAMMAR.fullmatch(text)
        if m is None:
            raise ValueError(f"not a resource address: {text!r}")
        idx = m.group("index")
        return cls(m.group("kind"), m.group("name"), int(idx) if idx is not None else None)

    @property
    def is_scheduler(self) -> bool:
        return self.kind == SCHEDULER and self.name is None

    @property
    def is_worker(self) -> bool:
        return self.kind == WORKERS

    @property
    def group(self) -> str | None:
        """The worker group a ``workers.<group>…`` address belongs to."""
        return self.name if self.kind == WORKERS else None


def worker(group: str, index: int | None = None) -> str:
    """``workers.<group>[<index>]``, or ``workers.<group>`` for a whole group."""
    return str(Address(WORKERS, group, index))


def node_pool(group: str) -> str:
    return str(Address(NODE_POOL, group))


def task_definition(role: str) -> str:
    return str(Address(TASK_DEFINITION, role))


def parse(text: str) -> Address | None:
    """The parsed address, or None for a string that is not one."""
    try:
        return Address.parse(text)
    except ValueError:
        return None


def group_of(name: str) -> str | None:
    """The group of an address or of a worker name derived from one.

    ``workers.default[3]`` (or the worker name ``workers.default[0]-2``) → ``default``.
    """
    m = _WORKER_NAME.match(name)
    return m.group(1) if m else None


def slug(address: str) -> str:
    """A name-safe form: ``workers.gpu[3]`` → ``gpu-3``; ``scheduler`` → ``scheduler``."""
    a = parse(address)
    if a is not None and a.kind == WORKERS and a.name is not None and a.index is not None:
        return f"{a.name}-{a.index}"
    return re.sub(r"[^A-Za-z0-9_-]+", "-", address).strip("-")


def sort_key(address: str) -> tuple[int, str, int]:
    """Reading order: the scheduler, then workers by group and index, then the rest."""
    if address == SCHEDULER:
        return (0, "", 0)
    base, _, idx = address.partition("[")
    try:
        n = int(idx.rstrip("]"))
    except ValueError:
        n = 0
    return (1 if base.startswith(WORKERS + ".") else 2, base, n)
