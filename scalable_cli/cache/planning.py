"""Cache-aware planning: of the calls a run will make, how many are already cached.

The objective planner then sizes capacity for the misses only
(``session.plan(calls=...)``), and the plan says so::

    cached: 600 of 1,000 calls; sizing for 400
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from scalable.cache import config
from scalable.cache.decorator import CachedCall, CachedFunction


@dataclass(frozen=True)
class CacheCount:
    total: int
    cached: int

    @property
    def misses(self) -> int:
        return self.total - self.cached

    def describe(self) -> str:
        if self.misses == 0:
            return f"cached: {self.cached:,} of {self.total:,} calls; nothing to compute"
        return f"cached: {self.cached:,} of {self.total:,} calls; sizing for {self.misses:,}"


def as_call(item: Any) -> CachedCall:
    """A ``CachedCall`` (``f.call(...)``) or a tuple ``(f, args[, kwargs])``."""
    if isinstance(item, CachedCall):
        return item
    if isinstance(item, tuple) and item and isinstance(item[0], CachedFunction):
        args = tuple(item[1]) if len(item) > 1 else ()
        kwargs = dict(item[2]) if len(item) > 2 else {}
        return CachedCall(item[0], args, kwargs)
    raise TypeError(
        f"calls= takes f.call(...) or (f, args, kwargs) of @cacheable functions, "
        f"not {type(item).__qualname__}"
    )


def count_cached(calls: Iterable[Any]) -> CacheCount:
    """How many of ``calls`` would be hits: the local store, then the remote (listed
    once per function rather than asked once per call)."""
    cache = config.current()
    total = cached = 0
    remote_keys: dict[str, set[str]] = {}
    for item in calls:
        call = as_call(item)
        total += 1
        name = call.func.name
        key = call.key()
        if cache.local.contains(name, key):
            cached += 1
            continue
        if cache.remote is not None:
            if name not in remote_keys:
                try:
                    remote_keys[name] = {k.rsplit("/", 1)[-1] for k in cache.remote.keys(name)}
                except Exception:  # an unreachable remote counts as empty
                    remote_keys[name] = set()
            if key in remote_keys[name]:
                cached += 1
    return CacheCount(total, cached)
