"""The scheduler plugin: records workers and tasks of one run (one scheduler's life).

Installed on every scheduler scalable starts, as ``--preload scalable.telemetry.plugin``.
It reads its context from the environment the provider sets on the scheduler process:

- ``SCALABLE_PROJECT``, ``SCALABLE_TARGET``, ``SCALABLE_PROVIDER``: the run's labels;
- ``SCALABLE_STATE_DIR`` (``<root>/.scalable/<target>``): where the database lives
  (``<root>/.scalable/telemetry.db``);
- ``SCALABLE_TELEMETRY``: ``db`` (write the database), ``memory`` (keep events in the
  scheduler; the CLI pulls them over the ``scalable_telemetry_pull`` RPC) or ``off``.
  By default ``db`` when the state folder exists and is writable, else ``memory``
  (a scheduler on a cloud VM or container);
- ``SCALABLE_TELEMETRY_FLUSH``: seconds between batched writes (default 1);
- ``SCALABLE_TELEMETRY_MAX_TASK_ROWS``: per-run task rows kept verbatim before tasks
  are folded into per-(prefix, tag) aggregates (default 100,000).

Cost: the transition hook does a few comparisons per transition and appends a tuple
per finished task; writes happen in one transaction per flush on a writer thread, so
the scheduler's event loop never waits on SQLite. Only task keys, key prefixes, the
``tag`` annotation, worker names and timings are kept: never arguments or results.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin
from scalable.events import CACHE_CALLS as CACHE_EVENT
from scalable.events import TELEMETRY_MODE_ENV, WORKER_REMOVED
from scalable.payloads import WorkerAdded, WorkerPreempted
from scalable.preemption import PREEMPTION_TOPIC
from scalable.telemetry.store import (
    DB_NAME,
    DEFAULT_MAX_TASK_ROWS,
    PULL_HANDLER,
    Aggregate,
    TelemetryDB,
    new_run_id,
)

logger = logging.getLogger("scalable.telemetry")

PLUGIN_NAME = "scalable-telemetry"
# Workers running @cacheable calls report each hit or miss on this topic
# (scalable.cache.decorator); the plugin records them as CACHE_EVENT events.
CACHE_TOPIC = "scalable-cache"
# How long a worker that retired itself may take to tell us why (lifetime → walltime).
REASON_GRACE = 2.0
# An idle scheduler still notes it is alive this often (runs.last_seen), so a run whose
# scheduler died without closing ends where it was last seen.
HEARTBEAT = 30.0

TaskTuple = tuple[str, str, "str | None", "str | None", "float | None", "float | None", str]
EventTuple = tuple[float, str, "str | None", dict[str, Any]]


# Dask's reason for the workers a closing scheduler closes.
SCHEDULER_CLOSE = "scheduler-close"


def removal_reason(stimulus_id: str, expected: bool | None, closing: str | None) -> str | None:
    """Why a worker left: ``walltime``, ``retired`` or ``lost`` (None: not known yet).

    - ``walltime``: the worker closed itself because its ``--lifetime`` ran out (scalable
      sets the lifetime just inside a batch job's walltime);
    - ``retired``: it left on purpose: ``retire_workers`` (scalable's scale-down and
      destroy), the scheduler closing it, or the worker shutting down cleanly (SIGTERM);
    - ``lost``: it went without a word: killed, crashed, its connection dropped.
    """
    if closing == "worker-lifetime-reached":
        return "walltime"
    if stimulus_id.startswith("worker-close-gracefully") and closing is None:
        return None  # the worker retired itself; its reason follows on its stream
    if expected or closing:
        return "retired"
    return "lost"


def _timing(startstops: Any) -> tuple[float | None, float | None]:
    if not startstops:
        return None, None
    for ss in startstops:
        if ss.get("action") == "compute":
            return float(ss["start"]), float(ss["stop"])
    return float(startstops[0]["start"]), float(startstops[-1]["stop"])


@dataclasses.dataclass(frozen=True)
class TelemetryConfig:
    mode: str  # db | memory | off
    project: str
    target: str
    provider: str
    db_path: Path | None
    flush_interval: float = 1.0
    max_task_rows: int = DEFAULT_MAX_TASK_ROWS

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> TelemetryConfig:
        e = dict(os.environ if env is None else env)
        state_dir = e.get("SCALABLE_STATE_DIR") or ""
        db_path = Path(state_dir).parent / DB_NAME if state_dir else None
        mode = (e.get(TELEMETRY_MODE_ENV) or "").strip().lower()
        if mode not in ("db", "memory", "off"):
            writable = bool(state_dir) and os.path.isdir(state_dir) and os.access(
                Path(state_dir).parent, os.W_OK)
            mode = "db" if writable else "memory"
        if mode == "db" and db_path is None:
            mode = "memory"
        return cls(
            mode=mode,
            project=e.get("SCALABLE_PROJECT") or "scalable",
            target=e.get("SCALABLE_TARGET") or "unknown",
            provider=e.get("SCALABLE_PROVIDER") or "unknown",
            db_path=db_path if mode == "db" else None,
            flush_interval=float(e.get("SCALABLE_TELEMETRY_FLUSH") or 1.0),
            max_task_rows=int(e.get("SCALABLE_TELEMETRY_MAX_TASK_ROWS")
                              or DEFAULT_MAX_TASK_ROWS),
        )


class TelemetryPlugin(SchedulerPlugin):
    """Buffers worker and task events in memory; flushes them in batches."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self, config: TelemetryConfig) -> None:
        self.config = config
        self.started_at = time.time()
        self.run_id = new_run_id(config.project, self.started_at)
        self.ended_at: float | None = None
        self.scheduler: Any = None
        self.scheduler_address: str | None = None
        self.db = TelemetryDB(config.db_path) if config.db_path is not None else None
        # Buffers filled on the event loop, emptied by _flush.
        self._events: list[EventTuple] = []
        self._tasks: list[TaskTuple] = []
        self._aggs: dict[tuple[str, str | None, str], Aggregate] = {}
        self._dirty: set[tuple[str, str | None, str]] = set()
        # Bookkeeping for counting each task once.
        self._row_keys: set[str] = set()
        self._recompute: set[str] = set()
        # Workers.
        self._names: dict[str, str] = {}
        self._closing: dict[str, str] = {}
        self._removal_info: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, tuple[float, float, dict[str, Any]]] = {}
        # memory mode: everything, in order, for pulls.
        self._log_events: list[EventTuple] = []
        self._log_tasks: list[TaskTuple] = []
        # db mode: batches waiting for the writer thread.
        self._outbox: deque[
            tuple[list[EventTuple], list[TaskTuple], list[Aggregate], float]] = deque()
        self._last_beat = 0.0
        # @cacheable hits/misses heard from workers since the last flush, per (tag, fn).
        self._cache: dict[tuple[str | None, str], list[float]] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._writing: Future[None] | None = None
        self._pc: Any = None
        self.write_errors = 0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.scheduler_address = scheduler.address
        scheduler.handlers[PULL_HANDLER] = self.pull
        if self.db is not None:
            try:
                self.db.start_run(
                    run_id=self.run_id, project=self.config.project,
                    target=self.config.target, provider=self.config.provider,
                    scheduler_address=self.scheduler_address, started_at=self.started_at,
                )
            except Exception as exc:  # never stop a scheduler over telemetry
                logger.warning("telemetry: cannot write %s (%s); keeping events in memory",
                               self.db.path, exc)
                self.db = None
        if self.db is not None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="scalable-telemetry")
        from tornado.ioloop import PeriodicCallback

        self._pc = PeriodicCallback(self._flush, self.config.flush_interval * 1000)
        self._pc.start()
        logger.info("telemetry: run %s (%s)", self.run_id,
                    f"writing {self.db.path}" if self.db else "in memory; pulled by the CLI")

    async def close(self) -> None:
        if self._pc is not None:
            self._pc.stop()
        self.ended_at = time.time()
        for addr in list(self._pending):
            self._finish_removal(addr, None)
        self._scheduler_closes_the_rest()
        self._flush()
        if self.db is not None:
            if self._writing is not None:
                await asyncio.wrap_future(self._writing)
            loop = asyncio.get_running_loop()
            assert self._executor is not None
            await loop.run_in_executor(self._executor, self._final_write)
            self._executor.shutdown(wait=False)

    def _final_write(self) -> None:
        self._drain()
        try:
            assert self.db is not None
            self.db.end_run(self.run_id, self.ended_at)
            self.db.close()
        except Exception as exc:
            logger.warning("telemetry: cannot end run %s: %s", self.run_id, exc)

    # -- hooks (event loop; keep them cheap) --------------------------------------------
    def transition(self, key: Any, start: str, finish: str, *args: Any,
                   stimulus_id: str | None = None, **kwargs: Any) -> None:
        if finish == "memory":
            if start != "processing":
                return
            status = "ok"
        elif finish == "erred":
            if start != "processing":
                status = "upstream"
            elif "exception_text" in kwargs:
                status = "error"
            elif "exception" in kwargs:
                status = "killed"
            else:
                status = "upstream"
        else:
            return
        ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
        if ts is None:
            return
        annotations = ts.annotations
        tag = annotations.get("tag") if annotations else None
        worker = kwargs.get("worker")
        start_t, stop_t = _timing(kwargs.get("startstops"))
        self._task_done(str(key), ts.prefix.name, None if tag is None else str(tag),
                        self._names.get(worker, worker) if worker else None,
                        start_t, stop_t, status)

    def _task_done(self, key: str, prefix: str, tag: str | None, worker: str | None,
                   start: float | None, stop: float | None, status: str) -> None:
        if key in self._row_keys or len(self._row_keys) < self.config.max_task_rows:
            self._row_keys.add(key)
            self._tasks.append((key, prefix, tag, worker, start, stop, status))
            return
        recomputed = key in self._recompute
        if recomputed:
            self._recompute.discard(key)
        ak = (prefix, tag, status)
        agg = self._aggs.get(ak)
        if agg is None:
            agg = self._aggs[ak] = Aggregate(prefix, tag, status)
        agg.add(None if start is None or stop is None else max(0.0, stop - start),
                count=not recomputed)
        self._dirty.add(ak)

    def add_worker(self, scheduler: Any, worker: str) -> None:
        ws = scheduler.workers.get(worker)
        name = str(ws.name) if ws is not None else worker
        self._names[worker] = name
        self._closing.pop(worker, None)
        added = WorkerAdded(address=worker, name=name,
                            nthreads=int(getattr(ws, "nthreads", 0) or 0),
                            memory_limit=int(getattr(ws, "memory_limit", 0) or 0))
        self._events.append((time.time(), added.kind, name, added.to_data()))

    def log_event(self, topic: str, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        if topic == CACHE_TOPIC:
            self._cache_call(msg)
            return
        action = msg.get("action")
        if topic == PREEMPTION_TOPIC and action == "worker-preempted":
            who = str(msg.get("worker") or "?")
            name: str | None = self._names.get(who) or msg.get("name")
            p = WorkerPreempted.from_data(msg, name)
            self._events.append((time.time(), p.kind, p.name, p.to_data()))
        elif action == "remove-worker" and topic == "all":
            addr = msg.get("worker")
            if addr:
                self._removal_info[addr] = msg
                lost = msg.get("lost-computed-tasks") or ()
                self._recompute.update(k for k in map(str, lost) if k not in self._row_keys)
        elif action == "closing-worker":
            addr = msg.get("worker") or topic
            self._closing[addr] = str(msg.get("reason") or "closing")
            if addr in self._pending:
                self._finish_removal(addr, self._closing.pop(addr))

    def _cache_call(self, msg: dict[str, Any]) -> None:
        tag = msg.get("tag")
        ck = (tag if isinstance(tag, str) else None, str(msg.get("function") or "?"))
        c = self._cache.get(ck)
        if c is None:
            c = self._cache[ck] = [0, 0, 0.0, 0.0]
        seconds = float(msg.get("seconds") or 0.0)
        if msg.get("hit"):
            c[0] += 1
            c[2] += seconds
        else:
            c[1] += 1
            c[3] += seconds

    def remove_worker(self, scheduler: Any, worker: str, *, stimulus_id: str = "",
                      **kwargs: Any) -> None:
        info = self._removal_info.pop(worker, {})
        now = time.time()
        data: dict[str, Any] = {
            "address": worker,
            "name": self._names.get(worker, worker),
            "stimulus_id": stimulus_id,
            "expected": info.get("expected"),
            "processing_tasks": len(info.get("processing-tasks") or ()),
            "lost_results": len(info.get("lost-computed-tasks") or ()),
        }
        closing = self._closing.pop(worker, None)
        reason = removal_reason(stimulus_id, info.get("expected"), closing)
        if reason is None:
            self._pending[worker] = (now + REASON_GRACE, now, data)
            return
        data["closing_reason"] = closing
        data["reason"] = reason
        self._events.append((now, WORKER_REMOVED, data["name"], data))

    def _scheduler_closes_the_rest(self) -> None:
        """Record the workers still attached as retired: ``Scheduler.close`` closes them
        (it sends each "close") after its plugins have closed, so no removal is heard."""
        workers = getattr(self.scheduler, "workers", None) or {}
        now = time.time()
        for addr, ws in list(workers.items()):
            name = self._names.get(addr, str(getattr(ws, "name", addr)))
            data = {"address": addr, "name": name, "stimulus_id": SCHEDULER_CLOSE,
                    "expected": True,
                    "processing_tasks": len(getattr(ws, "processing", ()) or ()),
                    "lost_results": 0, "closing_reason": SCHEDULER_CLOSE,
                    "reason": removal_reason("", True, SCHEDULER_CLOSE)}
            self._events.append((now, WORKER_REMOVED, name, data))

    def _finish_removal(self, worker: str, closing: str | None) -> None:
        _, ts, data = self._pending.pop(worker)
        data["closing_reason"] = closing
        # A worker that asked to retire itself and gave no other reason was retired.
        data["reason"] = removal_reason("", True, closing)
        self._events.append((ts, WORKER_REMOVED, data["name"], data))

    # -- flushing ---------------------------------------------------------------------
    def _take(self) -> tuple[list[EventTuple], list[TaskTuple], list[Aggregate]]:
        if self._cache:
            # One event per flush with the counts since the last: readers sum them.
            counts, self._cache = self._cache, {}
            self._events.append((time.time(), CACHE_EVENT, None, {"calls": [
                {"tag": tag, "function": fn, "hits": int(c[0]), "misses": int(c[1]),
                 "saved_seconds": c[2], "compute_seconds": c[3]}
                for (tag, fn), c in counts.items()]}))
        events, self._events = self._events, []
        tasks, self._tasks = self._tasks, []
        aggs = [dataclasses.replace(self._aggs[k], histogram=dict(self._aggs[k].histogram))
                for k in self._dirty]
        self._dirty = set()
        return events, tasks, aggs

    def _flush(self) -> None:
        """Move buffered records on (event loop side): to the writer, or to the log."""
        now = time.time()
        for addr, (deadline, _, _) in list(self._pending.items()):
            if now >= deadline:
                self._finish_removal(addr, self._closing.pop(addr, None))
        events, tasks, aggs = self._take()
        if not (events or tasks or aggs) and now - self._last_beat < HEARTBEAT:
            return
        self._last_beat = now
        if self.db is None:
            self._log_events.extend(events)
            self._log_tasks.extend(tasks)
            return
        with self._lock:
            self._outbox.append((events, tasks, aggs, now))
        if self._executor is not None and (self._writing is None or self._writing.done()):
            self._writing = self._executor.submit(self._drain)

    def _drain(self) -> None:
        """Write queued batches (writer thread). A failed batch stays for the next try."""
        assert self.db is not None
        while True:
            with self._lock:
                if not self._outbox:
                    return
                events, tasks, aggs, seen = self._outbox[0]
            try:
                self.db.write_batch(self.run_id, events=events, tasks=tasks, aggregates=aggs,
                                    last_seen=seen)
            except Exception as exc:
                self.write_errors += 1
                logger.warning("telemetry: write to %s failed (%s); will retry",
                               self.db.path, exc)
                return
            with self._lock:
                self._outbox.popleft()

    # -- the pull RPC ----------------------------------------------------------------------
    def run_info(self) -> dict[str, Any]:
        return {
            "id": self.run_id, "project": self.config.project, "target": self.config.target,
            "provider": self.config.provider, "scheduler_address": self.scheduler_address,
            "started_at": self.started_at, "ended_at": self.ended_at,
        }

    def pull(self, since_events: int | None = None, since_tasks: int = 0) -> dict[str, Any]:
        """``scalable_telemetry_pull``: the run, and (memory mode) records after a cursor.

        Without ``since_events`` only the run is returned (how the CLI learns its id).
        """
        if self.db is not None or since_events is None:
            return {"mode": "db" if self.db is not None else "memory",
                    "run": self.run_info(), "events": [], "tasks": [], "aggregates": [],
                    "cursor": None}
        self._flush()
        return {
            "mode": "memory",
            "run": self.run_info(),
            "events": [list(e) for e in self._log_events[since_events:]],
            "tasks": [list(t) for t in self._log_tasks[since_tasks:]],
            "aggregates": [a.to_dict() for a in self._aggs.values()],
            "cursor": [len(self._log_events), len(self._log_tasks)],
        }


def dask_setup(scheduler: Any) -> None:
    """Preload entry point: ``dask scheduler --preload scalable.telemetry.plugin``."""
    config = TelemetryConfig.from_env()
    if config.mode == "off":
        logger.info("telemetry: off (SCALABLE_TELEMETRY=off)")
        return
    scheduler.add_plugin(TelemetryPlugin(config), name=PLUGIN_NAME)
