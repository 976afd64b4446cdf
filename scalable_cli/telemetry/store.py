"""The telemetry database: SQLite in WAL mode at ``<root>/.scalable/telemetry.db``.

One database per project folder holds every run of every target. A *run* is the life
of one Dask scheduler. Writers are the scheduler plugin (workers and tasks), the
engine (apply / destroy steps) and the scaling controller (``scale_decision``);
readers are ``scalable report``, the TUI and the objective planner.

Schema (``SCHEMA_VERSION`` 1; see docs/guides/telemetry.rst)::

    runs(id, project, target, provider, manifest_digest, scheduler_address,
         started_at, ended_at, source, last_seen)
    events(id, run_id, ts, kind, worker, data)          -- data is JSON
    tasks(run_id, key, prefix, tag, worker, start, stop, status)
    task_aggregates(run_id, prefix, tag, status, count, total_seconds,
                    min_seconds, max_seconds, histogram)

Times are Unix epoch seconds (UTC). ``tasks`` holds one row per task key per run (a
task that was rescheduled or recomputed keeps one row: its last outcome) up to
``max_task_rows`` per run; tasks beyond that limit are folded into
``task_aggregates`` per (prefix, tag, status), with a log-scale duration histogram so
medians and percentiles stay available. Task statuses: ``ok``, ``error`` (raised on a
worker), ``killed`` (its workers died too often), ``upstream`` (a dependency failed).

This module is deliberately small and dependency-free (sqlite3 and json only): the
scheduler plugin imports it, and so does the CLI on its start-up path.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scalable.events import WORKER_ADDED, WORKER_REMOVED

SCHEMA_VERSION = 1
DB_NAME = "telemetry.db"
# The scheduler RPC a remote scheduler's plugin answers (see scalable.telemetry.plugin).
PULL_HANDLER = "scalable_telemetry_pull"
# Per-run task rows kept verbatim; beyond this, tasks are aggregated per (prefix, tag).
DEFAULT_MAX_TASK_ROWS = 100_000
TASK_STATUSES = ("ok", "error", "killed", "upstream")
FAILED_STATUSES = ("error", "killed", "upstream")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(
    key TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS runs(
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    target TEXT NOT NULL,
    provider TEXT NOT NULL,
    manifest_digest TEXT,
    scheduler_address TEXT,
    started_at REAL NOT NULL,
    ended_at REAL,
    source TEXT NOT NULL DEFAULT 'plugin',
    last_seen REAL
);
CREATE INDEX IF NOT EXISTS runs_target ON runs(target, started_at);
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    worker TEXT,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, kind, ts);
CREATE TABLE IF NOT EXISTS tasks(
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    prefix TEXT NOT NULL,
    tag TEXT,
    worker TEXT,
    start REAL,
    stop REAL,
    status TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS task_aggregates(
    run_id TEXT NOT NULL,
    prefix TEXT NOT NULL,
    tag TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    count INTEGER NOT NULL,
    total_seconds REAL NOT NULL,
    min_seconds REAL,
    max_seconds REAL,
    histogram TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, prefix, tag, status)
);
CREATE TABLE IF NOT EXISTS pull_cursors(
    run_id TEXT PRIMARY KEY,
    events INTEGER NOT NULL DEFAULT 0,
    tasks INTEGER NOT NULL DEFAULT 0
);
"""


def db_path(root: str | os.PathLike[str]) -> Path:
    """The database of the project whose manifest lives in ``root``."""
    return Path(root) / ".scalable" / DB_NAME


def new_run_id(project: str, when: float | None = None) -> str:
    """``run-YYYYMMDDTHHMMSS-<project>-<6 hex>``; the time is UTC."""
    stamp = datetime.fromtimestamp(when if when is not None else time.time(), timezone.utc)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", project).strip("-") or "scalable"
    return f"run-{stamp:%Y%m%dT%H%M%S}-{slug}-{os.urandom(3).hex()}"


# -- duration histograms (for aggregates) ---------------------------------------------
# Log-spaced buckets, 20 per decade from 1 µs: a bucket's midpoint is within ~6% of any
# duration in it, which is plenty for medians and p95s of task durations.
_H_BASE = 1e-6
_H_PER_DECADE = 20
_H_BUCKETS = 12 * _H_PER_DECADE  # 1 µs … 1e6 s


def bucket_of(seconds: float) -> int:
    if seconds <= _H_BASE:
        return 0
    i = int(math.log10(seconds / _H_BASE) * _H_PER_DECADE)
    return min(max(i, 0), _H_BUCKETS - 1)


def bucket_value(index: int) -> float:
    """The representative (log-midpoint) duration of a bucket."""
    return float(_H_BASE * 10 ** ((index + 0.5) / _H_PER_DECADE))


@dataclass
class Aggregate:
    """Tasks of one (prefix, tag, status) folded together past the per-run row limit."""

    prefix: str
    tag: str | None
    status: str
    count: int = 0
    total_seconds: float = 0.0
    min_seconds: float | None = None
    max_seconds: float | None = None
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, seconds: float | None, *, count: bool = True) -> None:
        if count:
            self.count += 1
        if seconds is None:
            return
        self.total_seconds += seconds
        if count:
            b = bucket_of(seconds)
            self.histogram[b] = self.histogram.get(b, 0) + 1
        self.min_seconds = seconds if self.min_seconds is None else min(self.min_seconds, seconds)
        self.max_seconds = seconds if self.max_seconds is None else max(self.max_seconds, seconds)

    def samples(self) -> list[tuple[float, int]]:
        """(representative duration, weight) pairs from the histogram."""
        return [(bucket_value(i), n) for i, n in sorted(self.histogram.items())]

    def to_row(self, run_id: str) -> tuple[Any, ...]:
        return (run_id, self.prefix, self.tag or "", self.status, self.count,
                self.total_seconds, self.min_seconds, self.max_seconds,
                json.dumps({str(k): v for k, v in self.histogram.items()}))

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "tag": self.tag, "status": self.status,
                "count": self.count, "total_seconds": self.total_seconds,
                "min_seconds": self.min_seconds, "max_seconds": self.max_seconds,
                "histogram": {str(k): v for k, v in self.histogram.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Aggregate:
        return cls(prefix=d["prefix"], tag=d.get("tag") or None, status=d["status"],
                   count=int(d["count"]), total_seconds=float(d["total_seconds"]),
                   min_seconds=d.get("min_seconds"), max_seconds=d.get("max_seconds"),
                   histogram={int(k): int(v) for k, v in (d.get("histogram") or {}).items()})


# -- records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    id: str
    project: str
    target: str
    provider: str
    manifest_digest: str | None
    scheduler_address: str | None
    started_at: float
    ended_at: float | None
    # Who wrote the run: 'plugin' (the scheduler wrote it here), 'pulled' (a remote
    # scheduler's events, pulled by the CLI), 'engine' (no plugin answered).
    source: str = "plugin"
    # When the scheduler's plugin last wrote (at least every HEARTBEAT seconds while it
    # lives): where a run that was never ended stopped.
    last_seen: float | None = None

    @property
    def running(self) -> bool:
        return self.ended_at is None

    def duration(self, now: float | None = None) -> float:
        end = self.ended_at if self.ended_at is not None else (now or time.time())
        return max(0.0, end - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Event:
    run_id: str
    ts: float
    kind: str
    worker: str | None
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "kind": self.kind, "worker": self.worker, "data": self.data}


@dataclass(frozen=True)
class TaskRow:
    run_id: str
    key: str
    prefix: str
    tag: str | None
    worker: str | None
    start: float | None
    stop: float | None
    status: str

    @property
    def duration(self) -> float | None:
        if self.start is None or self.stop is None:
            return None
        return max(0.0, self.stop - self.start)


@dataclass(frozen=True)
class WorkerSpan:
    """One worker's presence in a run: from ``worker_added`` to ``worker_removed``."""

    name: str
    address: str
    nthreads: int
    start: float
    stop: float | None  # None: still there (or the run ended without saying)
    reason: str | None  # retired | lost | walltime, when it left


@dataclass(frozen=True)
class TimelinePoint:
    """The worker count from ``ts`` on (a step function)."""

    ts: float
    workers: int
    threads: int


# -- the database -------------------------------------------------------------------------

_RUN_COLS = ("id, project, target, provider, manifest_digest, scheduler_address, "
             "started_at, ended_at, source, last_seen")
_TASK_UPSERT = (
    "INSERT INTO tasks(run_id, key, prefix, tag, worker, start, stop, status) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(run_id, key) DO UPDATE SET prefix=excluded.prefix, tag=excluded.tag, "
    "worker=excluded.worker, start=excluded.start, stop=excluded.stop, status=excluded.status"
)
_AGG_UPSERT = (
    "INSERT OR REPLACE INTO task_aggregates(run_id, prefix, tag, status, count, "
    "total_seconds, min_seconds, max_seconds, histogram) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class TelemetryDB:
    """A handle on one telemetry database. Cheap to create; connects lazily.

    Safe to use from several threads (one connection per thread) and several processes
    (WAL, a busy timeout). Every write is a short transaction.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._local = threading.local()
        self._select_runs = _RUN_COLS

    @classmethod
    def for_root(cls, root: str | os.PathLike[str], **kwargs: Any) -> TelemetryDB:
        return cls(db_path(root), **kwargs)

    @property
    def exists(self) -> bool:
        return self.path.exists()

    # -- connection -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        self._select_runs = _RUN_COLS
        if self.readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10.0,
                                   isolation_level=None)
            cols = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
            if "last_seen" not in cols:  # written before the column; cannot add it here
                self._select_runs = _RUN_COLS.replace("last_seen", "NULL AS last_seen")
        else:
            from scalable.private_files import private_dir

            private_dir(self.path.parent)
            new = not self.path.exists()
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            if new:
                os.chmod(self.path, 0o600)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._ensure_schema(conn)
        conn.execute("PRAGMA busy_timeout=10000")
        self._local.conn = conn
        return conn

    def _runs_cols(self) -> str:
        self._connect()
        return str(self._select_runs)

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        conn.executescript(_SCHEMA)
        cols = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        if "last_seen" not in cols:  # a database from before the column (additive)
            conn.execute("ALTER TABLE runs ADD COLUMN last_seen REAL")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"{self.path}: telemetry schema {row[0]} is newer than this scalable "
                f"understands ({SCHEMA_VERSION})"
            )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connect().execute(sql, params).fetchall()

    # -- runs ---------------------------------------------------------------------------
    def start_run(
        self,
        *,
        project: str,
        target: str,
        provider: str,
        scheduler_address: str | None = None,
        manifest_digest: str | None = None,
        started_at: float | None = None,
        run_id: str | None = None,
        source: str = "plugin",
    ) -> Run:
        started = started_at if started_at is not None else time.time()
        run = Run(
            id=run_id or new_run_id(project, started), project=project, target=target,
            provider=provider, manifest_digest=manifest_digest,
            scheduler_address=scheduler_address, started_at=started, ended_at=None,
            source=source,
        )
        with self.transaction() as c:
            c.execute(
                f"INSERT OR IGNORE INTO runs({_RUN_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run.id, run.project, run.target, run.provider, run.manifest_digest,
                 run.scheduler_address, run.started_at, run.ended_at, run.source,
                 run.last_seen),
            )
        return run

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set some of a run's columns (``scheduler_address``, ``manifest_digest``…)."""
        allowed = {"manifest_digest", "scheduler_address", "ended_at", "source"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update run columns {sorted(bad)}")
        if not fields:
            return
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.transaction() as c:
            c.execute(f"UPDATE runs SET {sets} WHERE id=?", (*fields.values(), run_id))

    def end_run(self, run_id: str, ended_at: float | None = None) -> None:
        """Mark a run ended (only the first end counts)."""
        with self.transaction() as c:
            c.execute("UPDATE runs SET ended_at=? WHERE id=? AND ended_at IS NULL",
                      (ended_at if ended_at is not None else time.time(), run_id))

    def run(self, run_id: str) -> Run | None:
        rows = self._query(f"SELECT {self._runs_cols()} FROM runs WHERE id=?", (run_id,))
        return Run(*rows[0]) if rows else None

    def runs(self, target: str | None = None, limit: int | None = None) -> list[Run]:
        """Runs, newest first."""
        sql = f"SELECT {self._runs_cols()} FROM runs"
        params: list[Any] = []
        if target is not None:
            sql += " WHERE target=?"
            params.append(target)
        sql += " ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [Run(*r) for r in self._query(sql, params)]

    def last_run(self, target: str | None = None) -> Run | None:
        runs = self.runs(target, limit=1)
        return runs[0] if runs else None

    def open_run(self, target: str, scheduler_address: str | None = None) -> Run | None:
        """The newest run of ``target`` that has not ended (optionally on one scheduler)."""
        sql = f"SELECT {self._runs_cols()} FROM runs WHERE target=? AND ended_at IS NULL"
        params: list[Any] = [target]
        if scheduler_address is not None:
            sql += " AND scheduler_address=?"
            params.append(scheduler_address)
        rows = self._query(sql + " ORDER BY started_at DESC LIMIT 1", params)
        return Run(*rows[0]) if rows else None

    def find_runs(self, prefix: str) -> list[Run]:
        """Runs whose id starts with ``prefix`` (for ``report --run`` abbreviations)."""
        rows = self._query(f"SELECT {self._runs_cols()} FROM runs WHERE id LIKE ? ESCAPE '\\' "
                           "ORDER BY started_at DESC",
                           (prefix.replace("%", r"\%").replace("_", r"\_") + "%",))
        return [Run(*r) for r in rows]

    # -- events -------------------------------------------------------------------------
    def record_event(
        self,
        run_id: str,
        kind: str,
        data: dict[str, Any] | None = None,
        *,
        worker: str | None = None,
        ts: float | None = None,
    ) -> None:
        """Append one event (``scale_decision``, ``apply_start``, …) to a run."""
        self.record_events(run_id, [(ts if ts is not None else time.time(), kind, worker,
                                     data or {})])

    def record_events(
        self, run_id: str, events: Iterable[tuple[float, str, str | None, dict[str, Any]]]
    ) -> None:
        """Append ``(ts, kind, worker, data)`` events in one transaction."""
        events = list(events)
        if not events:
            return
        with self.transaction() as c:
            _insert(c, run_id, events, (), ())

    def events(self, run_id: str, kinds: Iterable[str] | None = None) -> list[Event]:
        """A run's events in time order, optionally only some kinds."""
        sql = "SELECT run_id, ts, kind, worker, data FROM events WHERE run_id=?"
        params: list[Any] = [run_id]
        if kinds is not None:
            ks = list(kinds)
            sql += f" AND kind IN ({', '.join('?' for _ in ks)})"
            params += ks
        rows = self._query(sql + " ORDER BY ts, id", params)
        return [Event(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def events_after(
        self, run_id: str, after_id: int = 0, kinds: Iterable[str] | None = None
    ) -> list[tuple[int, Event]]:
        """A run's events recorded after event id ``after_id``, as ``(id, event)``.

        For readers that follow a run (the dashboard): ids grow in recording order,
        which is not always time order (the engine records some steps late).
        """
        sql = "SELECT id, run_id, ts, kind, worker, data FROM events WHERE run_id=? AND id>?"
        params: list[Any] = [run_id, after_id]
        if kinds is not None:
            ks = list(kinds)
            sql += f" AND kind IN ({', '.join('?' for _ in ks)})"
            params += ks
        rows = self._query(sql + " ORDER BY id", params)
        return [(int(r[0]), Event(r[1], r[2], r[3], r[4], json.loads(r[5]))) for r in rows]

    # -- tasks ---------------------------------------------------------------------------
    def write_batch(
        self,
        run_id: str,
        *,
        events: Sequence[tuple[float, str, str | None, dict[str, Any]]] = (),
        tasks: Sequence[tuple[str, str, str | None, str | None, float | None, float | None,
                              str]] = (),
        aggregates: Sequence[Aggregate] = (),
        last_seen: float | None = None,
    ) -> None:
        """One transaction for a plugin flush (``last_seen``: the plugin's heartbeat).

        ``tasks`` are ``(key, prefix, tag, worker, start, stop, status)``; a key already
        recorded in this run is updated (its last outcome wins). ``aggregates`` replace
        the stored totals of their (prefix, tag, status).
        """
        if not (events or tasks or aggregates or last_seen):
            return
        with self.transaction() as c:
            _insert(c, run_id, events, tasks, aggregates)
            if last_seen is not None:
                c.execute("UPDATE runs SET last_seen=? WHERE id=?", (last_seen, run_id))

    def tasks(self, run_id: str) -> list[TaskRow]:
        rows = self._query("SELECT run_id, key, prefix, tag, worker, start, stop, status "
                           "FROM tasks WHERE run_id=?", (run_id,))
        return [TaskRow(*r) for r in rows]

    def aggregates(self, run_id: str) -> list[Aggregate]:
        rows = self._query("SELECT prefix, tag, status, count, total_seconds, min_seconds, "
                           "max_seconds, histogram FROM task_aggregates WHERE run_id=?",
                           (run_id,))
        return [
            Aggregate(prefix=r[0], tag=r[1] or None, status=r[2], count=r[3],
                      total_seconds=r[4], min_seconds=r[5], max_seconds=r[6],
                      histogram={int(k): int(v) for k, v in json.loads(r[7]).items()})
            for r in rows
        ]

    def task_counts(self, run_id: str) -> dict[str, int]:
        """status → number of tasks (rows plus aggregates)."""
        out: dict[str, int] = {}
        for status, n in self._query("SELECT status, COUNT(*) FROM tasks WHERE run_id=? "
                                     "GROUP BY status", (run_id,)):
            out[status] = out.get(status, 0) + n
        for status, n in self._query("SELECT status, SUM(count) FROM task_aggregates "
                                     "WHERE run_id=? GROUP BY status", (run_id,)):
            out[status] = out.get(status, 0) + int(n or 0)
        return out

    def tag_counts(
        self, run_id: str, after_rowid: int = 0
    ) -> tuple[dict[tuple[str | None, str], int], int]:
        """(tag, status) → tasks recorded after row ``after_rowid``, and the last row seen.

        For readers that follow a run: pass the returned row back to count only new
        tasks. A task updated in place later (recomputed) is not counted again; its
        first outcome stays. Aggregated tasks are not included (see ``aggregates``).
        """
        out: dict[tuple[str | None, str], int] = {}
        last = after_rowid
        for tag, status, n, top in self._query(
            "SELECT tag, status, COUNT(*), MAX(rowid) FROM tasks WHERE rowid>? AND run_id=? "
            "GROUP BY tag, status", (after_rowid, run_id)):
            out[(tag, status)] = int(n)
            last = max(last, int(top))
        return out, last

    def finished_since(
        self, run_id: str, after_rowid: int, since: float
    ) -> list[tuple[str | None, float]]:
        """(tag, stop) of tasks recorded after row ``after_rowid`` that stopped at or
        after ``since`` (for throughput over a recent window)."""
        rows = self._query("SELECT tag, stop FROM tasks WHERE rowid>? AND run_id=? "
                           "AND stop>=?", (after_rowid, run_id, since))
        return [(r[0], float(r[1])) for r in rows]

    def task_span(self, run_id: str) -> tuple[float | None, float | None]:
        """(first task start, last task stop) of a run's recorded tasks (None: no tasks)."""
        rows = self._query("SELECT MIN(start), MAX(stop) FROM tasks WHERE run_id=?", (run_id,))
        first, last = rows[0] if rows else (None, None)
        return (None if first is None else float(first), None if last is None else float(last))

    def task_durations(
        self,
        target: str,
        tag: str | None = None,
        prefix: str | None = None,
        *,
        status: str = "ok",
        limit: int = 100_000,
    ) -> list[float]:
        """Durations (seconds) of finished tasks of ``target`` across all its runs.

        For the objective planner: how long each kind of task takes here. ``tag`` and
        ``prefix`` filter (``None``: any). Aggregated tasks contribute their histogram's
        bucket values (within ~6%). At most ``limit`` values come back: past it, an even
        subsample in duration order, so quantiles are preserved.
        """
        where = ["r.target=?", "t.status=?"]
        params: list[Any] = [target, status]
        if tag is not None:
            where.append("t.tag=?")
            params.append(tag)
        if prefix is not None:
            where.append("t.prefix=?")
            params.append(prefix)
        rows = self._query(
            "SELECT t.stop - t.start FROM tasks t JOIN runs r ON r.id=t.run_id WHERE "
            + " AND ".join(where) + " AND t.start IS NOT NULL AND t.stop IS NOT NULL",
            params,
        )
        values = [max(0.0, float(r[0])) for r in rows]
        awhere = [w.replace("t.", "a.") for w in where]
        aparams = list(params)
        agg_rows = self._query(
            "SELECT a.histogram FROM task_aggregates a JOIN runs r ON r.id=a.run_id WHERE "
            + " AND ".join(awhere), aparams,
        )
        for (hist,) in agg_rows:
            for k, n in json.loads(hist).items():
                values.extend([bucket_value(int(k))] * int(n))
        if len(values) > limit:
            values.sort()
            step = len(values) / limit
            values = [values[int(i * step)] for i in range(limit)]
        return values

    # -- workers ---------------------------------------------------------------------------
    def worker_spans(self, run_id: str) -> list[WorkerSpan]:
        """Each worker's presence, from its ``worker_added`` / ``worker_removed`` events."""
        return spans_of(self.events(run_id, (WORKER_ADDED, WORKER_REMOVED)))

    def worker_timeline(self, run_id: str) -> list[TimelinePoint]:
        """The number of workers (and threads) over time: one point per change."""
        return timeline(self.worker_spans(run_id))

    # -- pulled runs ---------------------------------------------------------------------
    def pull_cursor(self, run_id: str) -> tuple[int, int]:
        rows = self._query("SELECT events, tasks FROM pull_cursors WHERE run_id=?", (run_id,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def apply_pull(
        self,
        run_id: str,
        *,
        since: tuple[int, int],
        cursor: tuple[int, int],
        events: Sequence[tuple[float, str, str | None, dict[str, Any]]],
        tasks: Sequence[tuple[str, str, str | None, str | None, float | None, float | None,
                              str]],
        aggregates: Sequence[Aggregate],
    ) -> None:
        """Store records pulled from a remote scheduler, exactly once.

        ``events``/``tasks`` are the scheduler's logs from positions ``since`` on, and
        ``cursor`` is where they end. If another process stored part of them meanwhile
        (the stored cursor moved), only the part it did not store is added.
        """
        with self.transaction() as c:
            row = c.execute("SELECT events, tasks FROM pull_cursors WHERE run_id=?",
                            (run_id,)).fetchone()
            have_e, have_t = (int(row[0]), int(row[1])) if row else (0, 0)
            _insert(c, run_id, events[max(0, have_e - since[0]):],
                    tasks[max(0, have_t - since[1]):], aggregates)
            c.execute("INSERT OR REPLACE INTO pull_cursors(run_id, events, tasks) "
                      "VALUES (?, ?, ?)",
                      (run_id, max(have_e, cursor[0]), max(have_t, cursor[1])))


def _insert(
    c: sqlite3.Connection,
    run_id: str,
    events: Sequence[tuple[float, str, str | None, dict[str, Any]]],
    tasks: Sequence[tuple[Any, ...]],
    aggregates: Sequence[Aggregate],
) -> None:
    if events:
        c.executemany(
            "INSERT INTO events(run_id, ts, kind, worker, data) VALUES (?, ?, ?, ?, ?)",
            [(run_id, ts, kind, worker, json.dumps(data, default=str))
             for ts, kind, worker, data in events],
        )
    if tasks:
        c.executemany(_TASK_UPSERT, [(run_id, *t) for t in tasks])
    if aggregates:
        c.executemany(_AGG_UPSERT, [a.to_row(run_id) for a in aggregates])


def spans_of(events: Iterable[Event]) -> list[WorkerSpan]:
    """Worker spans from ``worker_added`` / ``worker_removed`` events (in time order;
    other kinds are ignored)."""
    open_: dict[str, dict[str, Any]] = {}
    spans: list[WorkerSpan] = []
    for ev in events:
        if ev.kind not in (WORKER_ADDED, WORKER_REMOVED):
            continue
        addr = str(ev.data.get("address") or ev.worker)
        if ev.kind == WORKER_ADDED:
            open_[addr] = {"name": ev.worker or addr, "address": addr,
                           "nthreads": int(ev.data.get("nthreads") or 1), "start": ev.ts}
        elif addr in open_:
            w = open_.pop(addr)
            spans.append(WorkerSpan(w["name"], addr, w["nthreads"], w["start"], ev.ts,
                                    ev.data.get("reason")))
    spans.extend(WorkerSpan(w["name"], a, w["nthreads"], w["start"], None, None)
                 for a, w in open_.items())
    return sorted(spans, key=lambda s: (s.start, s.name))


def timeline(spans: Iterable[WorkerSpan], end: float | None = None) -> list[TimelinePoint]:
    """Step function of worker and thread counts from spans (``end`` closes open ones)."""
    deltas: list[tuple[float, int, int]] = []
    for s in spans:
        deltas.append((s.start, 1, s.nthreads))
        stop = s.stop if s.stop is not None else end
        if stop is not None:
            deltas.append((stop, -1, -s.nthreads))
    deltas.sort(key=lambda d: (d[0], d[1]))  # removals before additions at the same instant
    out: list[TimelinePoint] = []
    workers = threads = 0
    for ts, dw, dt in deltas:
        workers += dw
        threads += dt
        if out and out[-1].ts == ts:
            out[-1] = TimelinePoint(ts, workers, threads)
        else:
            out.append(TimelinePoint(ts, workers, threads))
    return out
