"""Where the dashboard's pictures come from: a live target, or a recorded run.

``LiveSource.poll()`` makes one bounded reading per call (the app calls it once a
second, from a worker thread):

- one RPC to the scheduler (``scalable.tui.probe``): workers with host, threads,
  memory, tasks processing and CPU; queued and processing tasks per tag;
- ``state.json`` (desired counts of adaptive groups, resources still starting);
- every ``observe_every`` seconds, in a thread of its own, the provider's refresh of the
  recorded resources (a Slurm job that timed out, an instance terminated): drift;
- the run's telemetry recorded since the last poll (events by id, task outcomes by
  row), for the decision log, finished / failed tasks per tag, worker history and
  cost.

When the scheduler stops answering, ``poll()`` returns the last picture it had, marked
disconnected, and keeps trying (a new scheduler in state is attached to at once).

``ReplaySource`` draws a finished run from ``telemetry.db`` at any moment of its life.
Neither source imports Textual.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from scalable.addrs import group_of
from scalable.events import (
    APPLY_COMPLETE,
    BUDGET_EXHAUSTED,
    BUDGET_WARNING,
    DESTROY_START,
    PRICING,
    SCALE_DECISION,
    WORKER_ADDED,
    WORKER_PREEMPTED,
    WORKER_REMOVED,
)
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.telemetry.report import last_activity
from scalable.telemetry.store import (
    FAILED_STATUSES,
    Event,
    Run,
    TelemetryDB,
    WorkerSpan,
    spans_of,
)
from scalable.tui.model import (
    MAX_LOG_LINES,
    RATE_WINDOW,
    SPARK_COLUMNS,
    SPARK_SECONDS,
    GroupRow,
    LogLine,
    Snapshot,
    TagRow,
    WorkerRow,
    budget_view,
    cache_hits,
    cost_at,
    event_line,
    group_names,
    group_series,
    rate_from,
    spans_at,
    spans_of_group,
)

if TYPE_CHECKING:
    from scalable.state.model import StateFile
    from scalable.workspace import Workspace

Clock = Callable[[], float]
# How far behind the scheduler telemetry's task rows may be (the plugin's flush period).
RATE_LAG = 1.0
LOG_KINDS = (SCALE_DECISION, WORKER_PREEMPTED, WORKER_REMOVED, APPLY_COMPLETE, DESTROY_START,
             BUDGET_WARNING, BUDGET_EXHAUSTED)
SPAN_KINDS = (WORKER_ADDED, WORKER_REMOVED)


def _host_of(address: str) -> str:
    rest = address.split("://", 1)[-1]
    return rest.rsplit(":", 1)[0] if ":" in rest else rest


class _Loop:
    """A private asyncio loop in a daemon thread, for Dask comms off the UI's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       name="scalable-dashboard-comm", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class ProbeClient:
    """One scheduler, one ``rpc``: installs the probe once, then calls its handler."""

    def __init__(self, address: str, security: Any, timeout: float) -> None:
        import distributed.core  # noqa: F401  (imported here, not under a timeout)

        self.address = address
        self.security = security
        self.timeout = timeout
        self._loop = _Loop()
        self._rpc: Any = None
        self._installed = False

    async def _call(self) -> dict[str, Any]:
        from distributed.core import rpc
        from distributed.protocol.pickle import dumps
        from scalable.tui import probe

        if self._rpc is None:
            args = self.security.get_connection_args("client") if self.security else {}
            self._rpc = rpc(self.address, connection_args=args, timeout=self.timeout)
        if self._installed:
            result = await getattr(self._rpc, probe.HANDLER)()
            if isinstance(result, dict):
                return result
            self._installed = False  # a new scheduler on the same address
        import cloudpickle

        # By value: the scheduler needs nothing of scalable to run the probe.
        cloudpickle.register_pickle_by_value(probe)
        response = await self._rpc.run_function(function=dumps(probe.install),
                                                args=dumps(()), kwargs=dumps({}), wait=True)
        if response.get("status") != "OK":
            raise RuntimeError(f"the dashboard probe failed on the scheduler: "
                               f"{response.get('text') or response.get('exception')}")
        self._installed = True
        result = response["result"]
        return dict(result)

    def snapshot(self) -> dict[str, Any]:
        # The first call connects (TLS handshake) and ships the probe: allow it longer.
        timeout = self.timeout if self._installed else max(10.0, self.timeout)
        return dict(self._loop.run(asyncio.wait_for(self._call(), timeout), timeout + 1))

    def close(self) -> None:
        if self._rpc is not None:
            with contextlib.suppress(Exception):
                self._loop.run(self._rpc.close_rpc(), 2)
            self._rpc = None
        self._loop.stop()


class Observer:
    """Refreshes the recorded resources through the provider every ``period`` seconds
    (in its own thread: a slow ``squeue`` or cloud API never delays an update) and
    reports each one found gone once: drift the next ``scalable plan`` will repair."""

    def __init__(self, ws: Workspace, period: float, report: Callable[[str], None]) -> None:
        self.ws = ws
        self.period = period
        self.report = report
        self.seen: set[tuple[str, str | None]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scalable-dashboard-observe",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from scalable.workspace import Workspace

        try:  # its own provider object: nothing shared with the polling thread
            ws = Workspace.open(self.ws.spec.manifest_path, self.ws.spec.name)
        except Exception:
            return
        while not self._stop.wait(self.period):
            # A failed refresh is retried next period; updates go on meanwhile.
            with contextlib.suppress(Exception):
                self.check(ws)

    def check(self, ws: Workspace) -> None:
        state = ws.store.read()
        records = [r for r in (state.resources if state else []) if r.status == "ready"]
        if not records:
            return
        for address, obs in ws.provider.observe(records).items():
            rec = next((r for r in records if r.address == address), None)
            key = (address, rec.id if rec else None)
            if obs.status == "gone" and key not in self.seen:
                self.seen.add(key)
                kind = f" ({rec.type})" if rec else ""
                self.report(f"{address}{kind} is gone: {obs.reason or 'no reason given'}"
                            " (`scalable plan` shows the repair)")

    def stop(self) -> None:
        self._stop.set()


class LiveSource:
    """Polls a live target (see the module docstring)."""

    mode = "live"

    def __init__(self, ws: Workspace, *, timeout: float = 2.0, clock: Clock = time.time,
                 db: TelemetryDB | None = None, observe_every: float | None = 10.0) -> None:
        self.ws = ws
        self.observe_every = observe_every
        self._observer: Observer | None = None
        self.timeout = timeout
        self.clock = clock
        self.db = db if db is not None else TelemetryDB.for_root(ws.spec.root)
        self._probe_client: ProbeClient | None = None
        self._probe: dict[str, Any] | None = None
        self._probe_at: float | None = None
        self._lost_at: float | None = None
        self._state: StateFile | None = None
        self._state_read_at = 0.0
        backend = getattr(ws.store, "inner", ws.store)
        self._state_every = 0.0 if type(backend).__name__ == "LocalStore" else 5.0
        self._messages: list[LogLine] = []
        self._polls = 0
        self._opened = clock()
        self._telemetry_error: str | None = None
        self._reset_run()

    def _reset_run(self) -> None:
        self.run: Run | None = None
        self._last_pull = 0.0
        self._events: list[Event] = []  # time order
        self._event_keys: list[tuple[float, int]] = []
        self._event_cursor = 0
        self._row_counts: dict[tuple[str | None, str], int] = {}
        self._row_cursor = 0
        self._agg_counts: dict[tuple[str | None, str], int] = {}
        # Finish times of recent tasks (throughput), and aggregate totals over time
        # (tasks past the row limit have no times: their rate comes from the totals).
        self._recent: list[tuple[str | None, float]] = []
        self._agg_history: deque[tuple[float, dict[str | None, int]]] = deque()
        self._ready_history: dict[str, deque[tuple[float, int]]] = {}
        self._pricing: dict[str, Any] | None = None

    # -- public ----------------------------------------------------------------------
    @property
    def target(self) -> str:
        return self.ws.spec.name

    def note(self, text: str, kind: str = "note") -> None:
        """A line of the dashboard's own (scale requests, their outcome) in the log."""
        now = self.clock()
        self._messages.append(LogLine(f"m{len(self._messages)}", now, 0.0, kind, text))

    def poll(self) -> Snapshot:
        self._polls += 1
        now = self.clock()
        if self._observer is None and self.observe_every:
            self._observer = Observer(self.ws, self.observe_every,
                                      lambda text: self.note(text, "drift"))
        state = self._read_state(now)
        address = state.outputs.get(SCHEDULER_ADDRESS) if state is not None else None
        if address is None:
            if self._probe_client is not None:
                self._disconnect(now, "the target has no scheduler any more (destroyed?)")
        elif self._probe_client is None or self._probe_client.address != address:
            self._connect(state, address, now)
        if self._probe_client is not None:
            try:
                self._probe = self._probe_client.snapshot()
                self._probe_at = now
                if self._lost_at is not None:
                    self.note(f"scheduler at {address} answers again")
                self._lost_at = None
            except Exception as exc:
                if self._lost_at is None:
                    self._lost_at = now
                    reason = str(exc) or type(exc).__name__
                    self.note(f"scheduler at {address} is not answering ({reason})", "error")
        self._read_telemetry(address, state, now)
        return self._picture(state, address, now)

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
        if self._probe_client is not None:
            self._probe_client.close()
            self._probe_client = None

    # -- reading ---------------------------------------------------------------------
    def _read_state(self, now: float) -> StateFile | None:
        if self._state is None or now - self._state_read_at >= self._state_every:
            try:
                self._state = self.ws.store.read()
                self._state_read_at = now
            except Exception as exc:  # a state being rewritten; keep the last one
                self.note(f"cannot read state: {exc}", "error")
        return self._state

    def _connect(self, state: StateFile | None, address: str, now: float) -> None:
        if self._probe_client is not None:
            self._probe_client.close()
            self.note(f"a new scheduler: {address}")
        try:
            security = self.ws.provider.client_security(state.outputs if state else {})
        except Exception:
            security = None
        self._probe_client = ProbeClient(address, security, self.timeout)
        self._probe = None
        self._probe_at = None
        self._lost_at = None
        self._reset_run()

    def _disconnect(self, now: float, why: str) -> None:
        assert self._probe_client is not None
        self._probe_client.close()
        self._probe_client = None
        if self._lost_at is None:
            self._lost_at = now
        self.note(why, "error")

    def _read_telemetry(self, address: str | None, state: StateFile | None,
                        now: float) -> None:
        if address is None and self.run is None:
            return
        try:
            self._follow_run(address, state, now)
            self._telemetry_error = None
        except Exception as exc:  # telemetry never stops the dashboard
            text = f"telemetry unavailable: {exc}"
            if text != self._telemetry_error:  # once per distinct failure
                self._telemetry_error = text
                self.note(text, "error")

    def _follow_run(self, address: str | None, state: StateFile | None, now: float) -> None:
        db = self.db
        if self.run is None:
            if address is None:
                return
            run = db.open_run(self.target, address) if db.exists else None
            if run is None and now - self._last_pull >= 5.0:
                self._last_pull = now
                from scalable.telemetry.recorder import current_run

                run = current_run(self.ws, state)
            if run is None:
                return
            self.run = run
        elif self.run.source == "pulled" and address and now - self._last_pull >= 5.0:
            # A remote scheduler keeps its records in memory: copy the new ones here.
            self._last_pull = now
            from scalable.telemetry.recorder import pull

            security = self._probe_client.security if self._probe_client else None
            pull(db, address, security, timeout=self.timeout)
        run_id = self.run.id
        new = db.events_after(run_id, self._event_cursor)
        for ev_id, ev in new:
            self._event_cursor = max(self._event_cursor, ev_id)
            if ev.kind == PRICING:
                self._pricing = ev.data
            key = (ev.ts, ev_id)
            i = bisect.bisect(self._event_keys, key)
            self._event_keys.insert(i, key)
            self._events.insert(i, ev)
        # Finished tasks: new rows only; a full recount now and then catches rows that
        # were updated in place (a recomputed task's new outcome).
        cursor = self._row_cursor
        if self._polls % 30 == 0:
            self._row_counts, self._row_cursor = {}, 0
        horizon = now - RATE_WINDOW - RATE_LAG
        self._recent.extend(db.finished_since(run_id, cursor, horizon))
        counts, self._row_cursor = db.tag_counts(run_id, self._row_cursor)
        for k, n in counts.items():
            self._row_counts[k] = self._row_counts.get(k, 0) + n
        self._recent = [r for r in self._recent if r[1] >= horizon]
        aggs: dict[tuple[str | None, str], int] = {}
        for a in db.aggregates(run_id):
            aggs[(a.tag, a.status)] = aggs.get((a.tag, a.status), 0) + a.count
        self._agg_counts = aggs
        ended = db.run(run_id)
        if ended is not None:
            self.run = ended

    # -- the picture -----------------------------------------------------------------
    def _outcomes(self) -> dict[str | None, list[int]]:
        """tag → [done, failed] from telemetry."""
        out: dict[str | None, list[int]] = {}
        for source in (self._row_counts, self._agg_counts):
            for (tag, status), n in source.items():
                entry = out.setdefault(tag or None, [0, 0])
                if status == "ok":
                    entry[0] += n
                elif status in FAILED_STATUSES:
                    entry[1] += n
        return out

    def _picture(self, state: StateFile | None, address: str | None, now: float) -> Snapshot:
        spec = self.ws.spec
        probe = self._probe
        connected = self._lost_at is None and probe is not None
        # A disconnected picture is the last one seen: its moment is the last reading.
        at = now if connected or self._probe_at is None else self._probe_at
        run = self.run
        started = run.started_at if run is not None else None

        workers = tuple(
            WorkerRow(name=w[0], address=w[1], host=w[2], threads=w[3], memory=w[4],
                      memory_limit=w[5] or None, processing=w[6], cpu=w[7],
                      group=group_of(w[0]))
            for w in sorted((probe or {}).get("workers", []), key=lambda w: w[0])
        )

        # Work per tag: queues from the scheduler, outcomes from telemetry.
        outcomes = self._outcomes()
        if connected:
            totals: dict[str | None, int] = {}
            for (tag, _), n in self._agg_counts.items():
                totals[tag or None] = totals.get(tag or None, 0) + n
            self._agg_history.append((now, totals))
            while self._agg_history and now - self._agg_history[0][0] > 3 * RATE_WINDOW:
                self._agg_history.popleft()
        live_tags: dict[str, list[int]] = (probe or {}).get("tags", {})
        tags: list[str | None] = sorted(
            {t or None for t in live_tags} | set(outcomes), key=lambda t: (t is None, t or ""))
        work = tuple(
            TagRow(
                tag=t,
                queued=live_tags.get(t or "", [0, 0])[0] if probe else None,
                processing=live_tags.get(t or "", [0, 0])[1] if probe else None,
                done=outcomes.get(t, [0, 0])[0],
                failed=outcomes.get(t, [0, 0])[1],
                rate=self._rate(t, now) if connected else None,
            )
            for t in tags
        )

        # Capacity per group.
        spans = spans_of(self._events)
        registered = {w.name for w in workers}
        only = len(spec.groups) == 1
        groups = []
        for g in spec.groups:
            if g.adaptive is not None:
                want = state.scale.get(g.name, g.count) if state is not None else g.count
                desired: int | None = g.adaptive.clamp(want)
                mode = f"adaptive {g.adaptive.minimum}-{g.adaptive.maximum}"
            else:
                desired, mode = g.count, "fixed"
            gone = self._observer.seen if self._observer is not None else set()
            names = {n for r in (state.resources if state else [])
                     if r.group == g.name and r.status != "deleting"
                     and (r.address, r.id) not in gone  # drift, not on its way
                     for n in r.worker_names}
            ready = sum(1 for w in workers if only or w.group == g.name)
            pending = len(names - registered) if probe is not None else None
            if run is not None:
                series = group_series(spans_of_group(spans, g.name, only), run.started_at, at)
            else:
                series = self._own_series(g.name, ready, at, connected)
            groups.append(GroupRow(g.name, mode, desired, pending, ready, series,
                                   adaptive=g.adaptive is not None))

        # Cost: the run's recorded prices (else today's), over its workers' spans.
        cost = hourly = None
        note = ""
        if run is not None:
            pricing = self._pricing
            if pricing is None:
                try:
                    from scalable.telemetry.recorder import price_table

                    pricing = self._pricing = price_table(self.ws.provider)
                except Exception as exc:
                    note = f"no prices: {exc}"
            if pricing is not None:
                cost, hourly, note = cost_at(spans_at(spans, at), run.started_at, at, pricing)

        # Log times count from the run's start (without a run: from the dashboard's).
        log = self._log(started if started is not None else self._opened)
        if connected:
            status = "live"
        elif address is None:
            status = "no scheduler"
        elif probe is None:
            status = "connecting" if self._lost_at is None else "scheduler unreachable"
        else:
            status = "scheduler gone"
        if run is not None and run.ended_at is not None and not connected:
            status = "run ended"
        return Snapshot(
            mode="live", target=spec.name, provider=spec.provider,
            scheduler_address=address or (self._probe_client.address
                                          if self._probe_client else None),
            run_id=run.id if run else None, started_at=started, at=at, status=status,
            connected=connected, cost_usd=cost, hourly_usd=hourly, cost_note=note,
            groups=tuple(groups), workers=workers, work=work, log=log,
            waiting=(probe or {}).get("waiting"), approximate=bool((probe or {}).get("capped")),
            extra={"probe_seconds": (probe or {}).get("elapsed"), "lost_at": self._lost_at},
            cache=cache_hits(self._events),
            budget=budget_view(self._events, cost),
        )

    def _rate(self, tag: str | None, now: float) -> float:
        """Tasks of ``tag`` finished per second over RATE_WINDOW seconds up to RATE_LAG
        ago (telemetry reaches the database in batches, once a second)."""
        lo, hi = now - RATE_WINDOW - RATE_LAG, now - RATE_LAG
        rows = sum(1 for t, stop in self._recent if (t or None) == tag and lo <= stop < hi)
        return rows / RATE_WINDOW + (rate_from(list(self._agg_history), tag) or 0.0)

    def _own_series(self, group: str, ready: int, at: float, connected: bool) -> tuple[int, ...]:
        """Without telemetry: the worker counts this dashboard saw itself."""
        hist = self._ready_history.setdefault(group, deque(maxlen=SPARK_COLUMNS * 10))
        if connected:
            hist.append((at, ready))
        if not hist:
            return tuple([-1] * SPARK_COLUMNS)
        first = hist[0][0]
        spans = []
        prev_t, prev_n = hist[0]
        for t, n in list(hist)[1:] + [(at, -1)]:
            spans += [WorkerSpan(f"{group}:{i}", f"{group}:{i}", 1, prev_t, t, None)
                      for i in range(prev_n)]
            prev_t, prev_n = t, n
        return group_series(spans, first, at, SPARK_COLUMNS, SPARK_SECONDS)

    def _log(self, start: float) -> tuple[LogLine, ...]:
        lines = [ln for i, ev in enumerate(self._events)
                 if ev.kind in LOG_KINDS
                 and (ln := event_line(f"e{self._event_keys[i][1]}", ev, start)) is not None]
        lines += [replace(m, offset=m.ts - start) for m in self._messages]
        lines.sort(key=lambda ln: ln.ts)
        return tuple(lines[-MAX_LOG_LINES:])


class ReplaySource:
    """A recorded run, drawn at any moment ``at`` of its life (default: its end)."""

    mode = "replay"

    def __init__(self, db: TelemetryDB, run: Run, *, groups: tuple[str, ...] = ()) -> None:
        self.db = db
        self.run = run
        self.start = run.started_at
        self.end = run.ended_at if run.ended_at is not None else last_activity(db, run)
        self.events = db.events(run.id)
        self.event_ids = [f"e{i}" for i, _ in enumerate(self.events)]
        self.spans = spans_of(self.events)
        self.tasks = db.tasks(run.id)
        self.aggregates = db.aggregates(run.id)
        self.pricing = next((e.data for e in reversed(self.events) if e.kind == PRICING), None)
        self.limits = {(e.data.get("address"), e.ts): e.data.get("memory_limit")
                       for e in self.events if e.kind == WORKER_ADDED}
        decisions = [e for e in self.events if e.kind == SCALE_DECISION]
        self.groups = group_names(groups, self.spans, decisions)
        self.decisions = decisions
        self.at = self.end
        self.playing = False

    @property
    def target(self) -> str:
        return self.run.target

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    def seek(self, at: float) -> None:
        self.at = min(self.end, max(self.start, at))

    def poll(self) -> Snapshot:
        return self.snapshot(self.at)

    def close(self) -> None:
        pass

    def snapshot(self, at: float) -> Snapshot:
        at = min(self.end, max(self.start, at))
        run = self.run
        spans = spans_at(self.spans, at)
        present = [sp for sp in spans if sp.stop is None]

        busy: dict[str, int] = {}
        done: dict[str | None, int] = {}
        failed: dict[str | None, int] = {}
        running: dict[str | None, int] = {}
        recent: dict[str | None, int] = {}
        for t in self.tasks:
            if t.start is not None and t.start <= at and (t.stop is None or t.stop > at):
                if t.worker:
                    busy[t.worker] = busy.get(t.worker, 0) + 1
                running[t.tag] = running.get(t.tag, 0) + 1
            finished = t.stop if t.stop is not None else t.start
            if finished is not None and finished <= at:
                bucket = done if t.status == "ok" else failed
                bucket[t.tag] = bucket.get(t.tag, 0) + 1
                if t.status == "ok" and at - finished <= RATE_WINDOW:
                    recent[t.tag] = recent.get(t.tag, 0) + 1
        if at >= self.end:  # aggregated tasks carry no times: counted at the end
            for a in self.aggregates:
                bucket = done if a.status == "ok" else failed
                bucket[a.tag] = bucket.get(a.tag, 0) + a.count
        window = min(RATE_WINDOW, at - self.start)
        tags = sorted(set(done) | set(failed) | set(running),
                      key=lambda t: (t is None, t or ""))
        work = tuple(
            TagRow(tag=t, queued=None, processing=running.get(t, 0), done=done.get(t, 0),
                   failed=failed.get(t, 0),
                   rate=(recent.get(t, 0) / window) if window > 0 else None)
            for t in tags
        )

        workers = tuple(
            WorkerRow(name=sp.name, address=sp.address, host=_host_of(sp.address),
                      threads=sp.nthreads, memory=None, memory_limit=self._limit(sp),
                      processing=busy.get(sp.name, 0), cpu=None, group=group_of(sp.name))
            for sp in sorted(present, key=lambda s: s.name)
        )

        only = len(self.groups) <= 1
        groups = []
        for g in self.groups:
            mine = spans_of_group(spans, g, only)
            last = [e for e in self.decisions
                    if e.ts <= at and (e.data.get("group") or "default") == g]
            desired = int(last[-1].data["to"]) if last else None
            groups.append(GroupRow(
                name=g, mode="adaptive" if any((e.data.get("group") or "default") == g
                                               for e in self.decisions) else "-",
                desired=desired, pending=None,
                ready=sum(1 for sp in mine if sp.stop is None),
                history=group_series(mine, self.start, at),
                adaptive=bool(last),
            ))

        cost, hourly, note = cost_at(spans, self.start, at, self.pricing)
        log = tuple(
            ln for i, ev in enumerate(self.events)
            if ev.ts <= at and ev.kind in LOG_KINDS
            and (ln := event_line(self.event_ids[i], ev, self.start)) is not None
        )[-MAX_LOG_LINES:]
        position = 100.0 if self.duration == 0 else (at - self.start) / self.duration * 100
        status = f"replay {position:.0f}%" + (" ▶" if self.playing else "")
        return Snapshot(
            mode="replay", target=run.target, provider=run.provider,
            scheduler_address=run.scheduler_address, run_id=run.id, started_at=self.start,
            at=at, status=status, connected=False, cost_usd=cost, hourly_usd=hourly,
            cost_note=note, groups=tuple(groups), workers=workers, work=work, log=log,
            cache=cache_hits(self.events, at),
            budget=budget_view(self.events, cost, at),
        )

    def _limit(self, span: WorkerSpan) -> int | None:
        limit = self.limits.get((span.address, span.start))
        return int(limit) if limit else None
