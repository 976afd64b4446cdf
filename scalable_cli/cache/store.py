"""The local cache store: one file per entry, written atomically, evicted LRU.

Layout under the cache directory::

    <function>/<key[:2]>/<key>          an entry (see scalable.cache.entry)
    <function>/.stats/<host>-<pid>.json  this process's hits/misses/time saved

- Writes go to a temp file in the entry's folder, then ``os.replace``: a reader sees the
  old entry, the new one or none — never half of one. Two writers of one key each
  rename a complete file; the last wins and both are valid. A worker killed mid-write
  leaves only a ``.tmp`` file, which is never read and is swept later.
- No fsync: the checksum inside every entry already turns a file torn by a power cut
  into a miss, and fsync would cost a miss milliseconds.
- A read that fails the checksum (or cannot be unpickled) is a miss plus a warning, and
  the bad file is removed so the next call repairs it.
- LRU: a hit refreshes the entry's mtime (at most once a minute per entry); over the
  size limit, the least recently used entries go first, down to 90% of the limit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalable.cache.entry import CorruptEntry, Header, decode, decode_header, encode

log = logging.getLogger("scalable.cache")

TOUCH_EVERY = 60.0  # seconds between mtime refreshes of one entry (LRU)
RESCAN_EVERY = 60.0  # seconds between full size scans of a store with a size limit
STATS_FLUSH_EVERY = 2.0
EVICT_TO = 0.9  # of the size limit


class CacheWarning(UserWarning):
    """A cache entry could not be used (corrupt, unreadable) or written."""


def function_dir(function: str) -> str:
    """A folder name for ``module.qualname`` (``<locals>`` and the like made safe)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in function)
    return safe.strip(".") or "_"


@dataclass
class Stats:
    hits: int = 0
    misses: int = 0
    saved_seconds: float = 0.0  # sum over hits of the miss's recorded duration
    compute_seconds: float = 0.0  # sum over misses of their duration

    def add(self, other: Stats) -> None:
        self.hits += other.hits
        self.misses += other.misses
        self.saved_seconds += other.saved_seconds
        self.compute_seconds += other.compute_seconds

    @property
    def calls(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.calls if self.calls else None


@dataclass(frozen=True)
class EntryInfo:
    function: str  # the folder name (module.qualname, made safe)
    key: str
    path: Path
    size: int
    mtime: float


@dataclass
class _StatsBuffer:
    stats: dict[str, Stats] = field(default_factory=dict)
    dirty: bool = False
    flushed: float = 0.0


class LocalStore:
    def __init__(self, root: str | os.PathLike[str], size_limit: int | None = None) -> None:
        self.root = Path(root)
        self._root = str(self.root)
        self._fdirs: dict[str, str] = {}
        self.size_limit = size_limit
        self._lock = threading.Lock()
        self._approx_size: int | None = None
        self._scanned = 0.0
        self._stats = _StatsBuffer()
        self._stats_name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}.json"
        # Counters still buffered are written at exit, also in a worker its nanny forked:
        # that process leaves through os._exit, which runs multiprocessing's finalizers
        # but not atexit's (an ordinary interpreter's exit runs both).
        from multiprocessing import util as mp_util

        mp_util.Finalize(None, self.flush_stats, exitpriority=10)

    # -- entries -----------------------------------------------------------------------

    def path(self, function: str, key: str) -> Path:
        return Path(self._path(function, key))

    def _path(self, function: str, key: str) -> str:
        fdir = self._fdirs.get(function)
        if fdir is None:
            fdir = self._fdirs[function] = os.path.join(self._root, function_dir(function))
        return f"{fdir}/{key[:2]}/{key}"

    def get_bytes(self, function: str, key: str) -> bytes | None:
        p = self._path(function, key)
        try:
            with open(p, "rb") as f:
                data = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            warnings.warn(
                f"cache entry {p} unreadable ({exc}); recomputing", CacheWarning, stacklevel=3
            )
            return None
        if time.time() - mtime > TOUCH_EVERY:
            with contextlib.suppress(OSError):
                os.utime(p)
        return data

    def get(self, function: str, key: str) -> tuple[Header, Any] | None:
        """The entry's header and value, or None (missing, or corrupt: warned, removed)."""
        data = self.get_bytes(function, key)
        if data is None:
            return None
        try:
            return decode(data, key)
        except CorruptEntry as exc:
            self.discard(function, key, f"corrupt cache entry {self.path(function, key)}: {exc}")
            return None

    def discard(self, function: str, key: str, why: str) -> None:
        warnings.warn(f"{why}; treating it as a miss and recomputing", CacheWarning, stacklevel=3)
        with contextlib.suppress(OSError):
            self.path(function, key).unlink()

    def contains(self, function: str, key: str) -> bool:
        return os.path.isfile(self._path(function, key))

    def put_bytes(self, function: str, key: str, data: bytes) -> None:
        p = self.path(function, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.parent / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._grew(len(data))

    def put(self, header: Header, value: Any) -> bytes:
        data = encode(header, value)
        self.put_bytes(header.function, header.key, data)
        return data

    # -- size limit --------------------------------------------------------------------

    def _grew(self, nbytes: int) -> None:
        if self.size_limit is None:
            return
        with self._lock:
            now = time.time()
            if self._approx_size is None or now - self._scanned > RESCAN_EVERY:
                self._approx_size = self.total_size()
                self._scanned = now
            else:
                self._approx_size += nbytes
            if self._approx_size > self.size_limit:
                self._approx_size = self.evict(int(self.size_limit * EVICT_TO))
                self._scanned = now

    def entries(self, function: str | None = None) -> Iterator[EntryInfo]:
        if not self.root.is_dir():
            return
        fdirs = (
            [self.root / function_dir(function)]
            if function
            else sorted(p for p in self.root.iterdir() if p.is_dir())
        )
        for fdir in fdirs:
            if not fdir.is_dir():
                continue
            for sub in fdir.iterdir():
                if sub.name.startswith(".") or not sub.is_dir():
                    continue
                with os.scandir(sub) as it:
                    for e in it:
                        if e.name.startswith("."):
                            continue
                        try:
                            st = e.stat()
                        except FileNotFoundError:
                            continue
                        yield EntryInfo(fdir.name, e.name, Path(e.path), st.st_size, st.st_mtime)

    def total_size(self) -> int:
        return sum(e.size for e in self.entries())

    def evict(self, target_bytes: int) -> int:
        """Remove least recently used entries until at most ``target_bytes`` remain;
        returns the bytes left."""
        found = sorted(self.entries(), key=lambda e: e.mtime)
        total = sum(e.size for e in found)
        for e in found:
            if total <= target_bytes:
                break
            try:
                e.path.unlink()
                total -= e.size
                log.info("cache: evicted %s/%s (%d bytes)", e.function, e.key[:12], e.size)
            except FileNotFoundError:
                total -= e.size
            except OSError:
                continue
        return total

    def header(self, info: EntryInfo) -> Header | None:
        try:
            with open(info.path, "rb") as f:
                head = f.read(64 * 1024)
            return decode_header(head)[0]
        except (OSError, CorruptEntry):
            return None

    def clear(self, function: str | None = None, older_than: float | None = None) -> int:
        """Remove entries (of one function; last used before ``now - older_than``
        seconds); returns how many. Clearing a whole function clears its statistics."""
        cutoff = None if older_than is None else time.time() - older_than
        removed = 0
        for e in list(self.entries(function)):
            if cutoff is not None and e.mtime >= cutoff:
                continue
            try:
                e.path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        if older_than is None:
            fdirs = (
                [self.root / function_dir(function)]
                if function
                else ([p for p in self.root.iterdir() if p.is_dir()] if self.root.is_dir() else [])
            )
            import shutil

            for fdir in fdirs:
                shutil.rmtree(fdir, ignore_errors=True)
        self._approx_size = None
        return removed

    def sweep_temp(self, older_than: float = 3600.0) -> int:
        """Remove temp files left by writers that died mid-write."""
        n = 0
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than
        for p in self.root.glob("*/*/.*.tmp"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    n += 1
            except OSError:
                pass
        return n

    # -- statistics --------------------------------------------------------------------

    def record(self, function: str, *, hit: bool, seconds: float) -> None:
        with self._lock:
            s = self._stats.stats.setdefault(function, Stats())
            if hit:
                s.hits += 1
                s.saved_seconds += seconds
            else:
                s.misses += 1
                s.compute_seconds += seconds
            if not self._stats.dirty:
                # Flush within STATS_FLUSH_EVERY even if no call follows (a worker that
                # stays up idle): one timer per burst of calls, not one per call.
                timer = threading.Timer(STATS_FLUSH_EVERY, self.flush_stats)
                timer.daemon = True
                timer.start()
            self._stats.dirty = True

    def flush_stats(self) -> None:
        """Write this process's counters (one small file per function per process)."""
        with self._lock:
            if not self._stats.dirty:
                return
            snapshot = {f: Stats(**s.__dict__) for f, s in self._stats.stats.items()}
            self._stats.dirty = False
            self._stats.flushed = time.monotonic()
        for function, s in snapshot.items():
            d = self.root / function_dir(function) / ".stats"
            try:
                d.mkdir(parents=True, exist_ok=True)
                tmp = d / f".{self._stats_name}.tmp"
                tmp.write_text(json.dumps({"function": function, **s.__dict__}))
                os.replace(tmp, d / self._stats_name)
            except OSError as exc:
                log.debug("cache: statistics not written: %s", exc)

    def stats(self) -> dict[str, Stats]:
        """Hits, misses and time saved per function, summed over every process."""
        self.flush_stats()
        out: dict[str, Stats] = {}
        if not self.root.is_dir():
            return out
        for f in self.root.glob("*/.stats/*.json"):
            try:
                raw = json.loads(f.read_text())
                name = raw.pop("function")
                out.setdefault(name, Stats()).add(Stats(**raw))
            except (OSError, ValueError, TypeError, KeyError):
                continue
        return out
