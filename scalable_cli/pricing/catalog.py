"""Bundled, dated price catalogs (CSV files in ``pricing/data``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    region: str
    vcpus: float
    memory_gib: float
    on_demand: float | None
    spot: float | None
    gpus: int = 0  # GPUs per machine (EC2 GPU families)
    gpu_type: str | None = None  # lower case: a10g, l4, t4, a100, v100
    source: str = ""  # where this row's price comes from, when not the catalog's


@dataclass(frozen=True)
class Catalog:
    name: str
    source: str
    entries: dict[tuple[str, str], CatalogEntry]

    def lookup(self, name: str, region: str) -> CatalogEntry | None:
        return self.entries.get((name, region))

    def names(self) -> list[str]:
        return sorted({n for n, _ in self.entries})


def _rows(filename: str) -> tuple[str, list[dict[str, str]]]:
    text = resources.files("scalable.pricing").joinpath("data", filename).read_text()
    comments = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("#")]
    body = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return " ".join(comments), list(csv.DictReader(body))


def _float(v: str | None) -> float | None:
    return float(v) if v not in (None, "") else None


# Extra files of a catalog, each with its own dated source (EC2's GPU families).
_EXTRA = {"aws_ec2": ("aws_ec2_gpu.csv",), "gcp_gce": ("gcp_gce_n1.csv",)}


@cache
def machine_catalog(kind: str) -> Catalog:
    """``aws_ec2`` or ``gcp_gce``: machine types by (type, region)."""
    source, rows = _rows(f"{kind}.csv")
    key = "instance_type" if kind == "aws_ec2" else "machine_type"
    entries: dict[tuple[str, str], CatalogEntry] = {}
    for extra_source, extra_rows in [("", rows), *(_rows(f) for f in _EXTRA.get(kind, ()))]:
        for r in extra_rows:
            entries[(r[key], r["region"])] = CatalogEntry(
                name=r[key],
                region=r["region"],
                vcpus=float(r["vcpus"]),
                memory_gib=float(r["memory_gib"]),
                on_demand=_float(r["on_demand_usd_hour"]),
                spot=_float(r["spot_usd_hour_median"]),
                gpus=int(r.get("gpus") or 0),
                gpu_type=r.get("gpu_type") or None,
                source=extra_source,
            )
    return Catalog(name=kind, source=source, entries=entries)


@cache
def fargate_rates(region: str) -> dict[str, float] | None:
    _, rows = _rows("aws_fargate.csv")
    for r in rows:
        if r["region"] == region:
            return {k: float(v) for k, v in r.items() if k != "region"}
    return None


@dataclass(frozen=True)
class Accelerator:
    """One GPU model in one region: the zones offering it and its price per GPU-hour."""

    name: str  # GKE's accelerator_type, e.g. nvidia-l4
    gpu: str  # the short name a manifest may use, e.g. l4
    machine_series: str  # the machine types it attaches to (n1, g2, a2)
    region: str
    zones: tuple[str, ...]  # full zone names, e.g. us-central1-a
    usd_hour: float


@cache
def gcp_accelerators() -> tuple[str, tuple[Accelerator, ...]]:
    """(source, rows) of the bundled GCE accelerator table."""
    source, rows = _rows("gcp_accelerators.csv")
    return source, tuple(
        Accelerator(name=r["accelerator_type"], gpu=r["gpu"],
                    machine_series=r["machine_series"], region=r["region"],
                    zones=tuple(f"{r['region']}-{z}" for z in r["zones"].split()),
                    usd_hour=float(r["usd_hour_per_gpu"]))
        for r in rows)
