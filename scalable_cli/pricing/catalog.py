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


@cache
def machine_catalog(kind: str) -> Catalog:
    """``aws_ec2`` or ``gcp_gce``: machine types by (type, region)."""
    source, rows = _rows(f"{kind}.csv")
    key = "instance_type" if kind == "aws_ec2" else "machine_type"
    entries = {
        (r[key], r["region"]): CatalogEntry(
            name=r[key],
            region=r["region"],
            vcpus=float(r["vcpus"]),
            memory_gib=float(r["memory_gib"]),
            on_demand=_float(r["on_demand_usd_hour"]),
            spot=_float(r["spot_usd_hour_median"]),
        )
        for r in rows
    }
    return Catalog(name=kind, source=source, entries=entries)


@cache
def fargate_rates(region: str) -> dict[str, float] | None:
    _, rows = _rows("aws_fargate.csv")
    for r in rows:
        if r["region"] == region:
            return {k: float(v) for k, v in r.items() if k != "region"}
    return None
