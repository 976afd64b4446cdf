"""Cache hits and misses of one run, from its telemetry events.

Workers report every ``@cacheable`` call inside a Dask task to the scheduler; the
telemetry plugin writes the counts since its last flush as ``cache_calls`` events
(``{"calls": [{tag, function, hits, misses, saved_seconds, compute_seconds}]}``). The
report, the dashboard and the JSON document sum them here. Time saved is, for each
hit, the duration its entry's miss took to compute.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scalable.events import CACHE_CALLS as CACHE_EVENT


@dataclass
class CacheCounts:
    hits: int = 0
    misses: int = 0
    saved_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def calls(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.calls if self.calls else None

    def add(self, row: dict[str, Any]) -> None:
        self.hits += int(row.get("hits") or 0)
        self.misses += int(row.get("misses") or 0)
        self.saved_seconds += float(row.get("saved_seconds") or 0.0)
        self.compute_seconds += float(row.get("compute_seconds") or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
            "time_saved_seconds": self.saved_seconds,
            "compute_seconds": self.compute_seconds,
        }


@dataclass
class CacheSummary:
    total: CacheCounts = field(default_factory=CacheCounts)
    by_tag: dict[str, CacheCounts] = field(default_factory=dict)
    by_function: dict[str, CacheCounts] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.total.to_dict(),
            "by_tag": {t: c.to_dict() for t, c in sorted(self.by_tag.items())},
            "by_function": {f: c.to_dict() for f, c in sorted(self.by_function.items())},
        }


def summarise(events: Iterable[Any]) -> CacheSummary | None:
    """Sum ``cache_calls`` events (telemetry ``Event`` objects); None if there are none."""
    out: CacheSummary | None = None
    for e in events:
        if e.kind != CACHE_EVENT:
            continue
        out = out or CacheSummary()
        for row in e.data.get("calls") or ():
            out.total.add(row)
            tag = row.get("tag") or "-"
            out.by_tag.setdefault(tag, CacheCounts()).add(row)
            out.by_function.setdefault(str(row.get("function")), CacheCounts()).add(row)
    return out
