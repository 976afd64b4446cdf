"""Where the cache lives, read from the environment at each call (cheap; so a test or a
worker that changes it is obeyed at once).

- ``SCALABLE_CACHE_DIR``: the local store. Default: ``<root>/.scalable/cache`` on
  processes scalable started (their ``SCALABLE_STATE_DIR`` is ``<root>/.scalable/<target>``),
  else ``.scalable/cache`` under the current directory.
- ``SCALABLE_CACHE_REMOTE``: ``s3://bucket/prefix/``, a shared store behind the local one.
- ``SCALABLE_CACHE_SIZE_LIMIT``: e.g. ``10GiB``; least recently used entries are evicted.
- ``SCALABLE_CACHE``: ``off`` runs every call (no lookups, no writes).
- ``SCALABLE_CACHE_OFF_TAGS``: comma-separated task tags that never use the cache
  (the manifest's ``cache: {tags: {NAME: false}}``).
- ``SCALABLE_SEED``: part of every key.

A target's manifest ``cache:`` block is turned into these variables for its workers.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scalable.cache.remote import S3Remote
from scalable.cache.store import LocalStore

if TYPE_CHECKING:
    from scalable.manifest.schema import CacheConfig

ENV_DIR = "SCALABLE_CACHE_DIR"
ENV_REMOTE = "SCALABLE_CACHE_REMOTE"
ENV_LIMIT = "SCALABLE_CACHE_SIZE_LIMIT"
ENV_SWITCH = "SCALABLE_CACHE"
ENV_OFF_TAGS = "SCALABLE_CACHE_OFF_TAGS"
ENV_SEED = "SCALABLE_SEED"
DEFAULT_DIR = Path(".scalable") / "cache"


@dataclass(frozen=True)
class CacheSettings:
    directory: str
    remote: str | None
    size_limit: int | None

    @classmethod
    def from_env(cls) -> CacheSettings:
        env = os.environ
        return cls(
            _directory(env.get(ENV_DIR), env.get("SCALABLE_STATE_DIR")),
            env.get(ENV_REMOTE) or None,
            _limit(env.get(ENV_LIMIT)),
        )


def _directory(explicit: str | None, state_dir: str | None) -> str:
    if explicit:
        return str(Path(explicit).expanduser().absolute())
    if state_dir:
        return str(Path(state_dir).parent / "cache")
    return str(DEFAULT_DIR.absolute())


def _limit(raw: str | None) -> int | None:
    if not raw:
        return None
    from scalable.units import parse_size

    return parse_size(raw)


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip().lower() not in ("off", "0", "false", "no")


def off_tags() -> frozenset[str]:
    raw = os.environ.get(ENV_OFF_TAGS, "")
    return frozenset(t.strip() for t in raw.split(",") if t.strip())


def seed() -> str:
    return os.environ.get(ENV_SEED, "")


@dataclass
class Cache:
    """The stores one process uses: local first, then the remote (if any)."""

    local: LocalStore
    remote: S3Remote | None


_CACHES: dict[CacheSettings, Cache] = {}
_LOCK = threading.Lock()


_BY_ENV: dict[tuple[str | None, ...], Cache] = {}


def current() -> Cache:
    """The stores for the environment as it is now (memoised on the raw variables and
    the working directory, so a hit costs no path arithmetic)."""
    env = os.environ
    raw = (
        env.get(ENV_DIR),
        env.get("SCALABLE_STATE_DIR"),
        env.get(ENV_REMOTE),
        env.get(ENV_LIMIT),
        os.getcwd(),
    )
    cache = _BY_ENV.get(raw)
    if cache is not None:
        return cache
    settings = CacheSettings.from_env()
    with _LOCK:
        cache = _CACHES.get(settings)
        if cache is None:
            cache = Cache(
                LocalStore(settings.directory, settings.size_limit),
                S3Remote(settings.remote) if settings.remote else None,
            )
            _CACHES[settings] = cache
        _BY_ENV[raw] = cache
    return cache


def worker_env(cfg: CacheConfig, root: Path | None) -> dict[str, str]:
    """The environment that carries a manifest's ``cache:`` block to a target's workers
    (``root``: the manifest's folder where workers share its filesystem, else None)."""
    env: dict[str, str] = {}
    if not cfg.enabled:
        env[ENV_SWITCH] = "off"
    if cfg.directory:
        d = Path(cfg.directory).expanduser()
        env[ENV_DIR] = str(root / d if root is not None and not d.is_absolute() else d)
    if cfg.remote:
        env[ENV_REMOTE] = cfg.remote
    if cfg.size_limit is not None:
        env[ENV_LIMIT] = str(cfg.size_limit)
    off = sorted(t for t, on in cfg.tags.items() if not on)
    if off:
        env[ENV_OFF_TAGS] = ",".join(off)
    return env
