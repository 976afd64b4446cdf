"""EC2 GPU instance types: which GPUs a type has, and which types fit a GPU group.

The bundled catalog (``pricing/data/aws_ec2_gpu.csv``) knows the GPU families scalable
prices: g4dn (T4), g5 (A10G), g6 (L4), p3 (V100), p4d (A100). ``gpu_type`` names the GPU,
which picks the family (``a10g`` → g5); a type outside the catalog is taken on trust
(AWS's ``describe-instance-types`` judges it at plan).
"""

from __future__ import annotations

from dataclasses import dataclass

from scalable.pricing.catalog import CatalogEntry, machine_catalog

# gpu_type → the EC2 family that has it (lower case, as the catalog writes it).
FAMILIES = {"t4": "g4dn", "a10g": "g5", "l4": "g6", "v100": "p3", "a100": "p4d"}


@dataclass(frozen=True)
class GpuShape:
    count: int
    gpu_type: str


def known(instance_type: str) -> CatalogEntry | None:
    """The catalog's row for a type (any region: GPUs do not vary by region)."""
    cat = machine_catalog("aws_ec2")
    return next((e for (n, _), e in cat.entries.items() if n == instance_type), None)


def gpus_of(instance_type: str) -> GpuShape | None:
    """GPUs of a catalogued type (count 0 for a CPU type); None: not in the catalog."""
    entry = known(instance_type)
    if entry is None:
        return None
    return GpuShape(entry.gpus, entry.gpu_type or "")


def fitting(need: int, gpu_type: str | None, region: str | None, limit: int = 4
            ) -> list[CatalogEntry]:
    """The cheapest catalogued types with at least ``need`` GPUs (of ``gpu_type``)."""
    cat = machine_catalog("aws_ec2")
    rows = [e for (_, r), e in cat.entries.items()
            if e.gpus >= need and (gpu_type is None or e.gpu_type == gpu_type.lower())
            and (region is None or r == region)]
    if not rows and region is not None:
        return fitting(need, gpu_type, None, limit)
    best: dict[str, CatalogEntry] = {}
    for e in rows:
        if e.name not in best or (e.on_demand or 1e9) < (best[e.name].on_demand or 1e9):
            best[e.name] = e
    return sorted(best.values(), key=lambda e: (e.on_demand or 1e9, e.name))[:limit]


def describe(entries: list[CatalogEntry]) -> str:
    """``g6.xlarge (1× L4, $0.80/h), g4dn.xlarge (…)``."""
    return ", ".join(
        f"{e.name} ({e.gpus}× {(e.gpu_type or '?').upper()}"
        + (f", ${e.on_demand:.2f}/h" if e.on_demand is not None else "") + ")"
        for e in entries)


def problem(instance_type: str, need: int, gpu_type: str | None, region: str | None
            ) -> str | None:
    """Why ``instance_type`` cannot give ``need`` GPUs of ``gpu_type`` (None: it can, or
    the catalog does not know the type)."""
    shape = gpus_of(instance_type)
    wanted = f"{need} {gpu_type.upper() + ' ' if gpu_type else ''}GPU(s)"
    if gpu_type and gpu_type.lower() not in FAMILIES:
        return (f"gpu_type {gpu_type!r} is not an EC2 GPU scalable knows "
                f"(known: {', '.join(sorted(FAMILIES))})")
    if shape is None:
        return None
    if shape.count == 0:
        why = f"instance type {instance_type} has no GPUs"
    elif gpu_type and shape.gpu_type != gpu_type.lower():
        why = (f"instance type {instance_type} has {shape.gpu_type.upper()} GPUs, not "
               f"{gpu_type.upper()} (family {FAMILIES[gpu_type.lower()]})")
    elif shape.count < need:
        why = f"instance type {instance_type} has {shape.count} GPU(s)"
    else:
        return None
    fits = fitting(need, gpu_type, region)
    return f"{why}; {wanted} fit " + (describe(fits) if fits else "no catalogued type")
