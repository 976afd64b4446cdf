"""The engine's side of telemetry: apply / destroy steps into the target's current run.

``RunRecorder`` is the ``EventSink`` that ``Workspace.engine()`` gives every engine (the
CLI's and ``ScalableSession``'s). A run is named by the scheduler's plugin when the
scheduler starts, so the recorder keeps the steps that come before it (``apply_start``,
the scheduler's own ``resource_created``) and attaches them once it can find the run:
in the database by scheduler address, or by asking the scheduler
(``scalable_telemetry_pull``), which is also how the records of a remote scheduler
(memory mode) are copied into the local database — on every apply/destroy step that
resolves the run, before the scheduler is deleted, and from ``report`` and ``status``.

Telemetry never fails a command: errors here are logged and dropped.
``SCALABLE_TELEMETRY=off`` turns the recorder (and the plugin) off.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from scalable.addrs import SCHEDULER
from scalable.events import (
    APPLY_COMPLETE,
    LIVE_ONLY,
    PRICING,
    RESOURCE_DELETED,
    RESOURCE_DELETING,
    TELEMETRY_MODE_ENV,
)
from scalable.hooks import Hook
from scalable.outputs import SCHEDULER_ADDRESS

# telemetry.store (sqlite3) and telemetry.report are imported where used: every engine
# gets a recorder, `plan` included, and `plan` writes nothing (issue 15).
if TYPE_CHECKING:
    import logging

    from scalable.payloads import Payload
    from scalable.providers.base import Provider
    from scalable.state.model import StateFile
    from scalable.telemetry.store import Run, TelemetryDB
    from scalable.workspace import Workspace


def _logger() -> logging.Logger:
    """The telemetry logger; ``logging`` is imported only on the error paths that log
    (``plan`` gets a recorder too, and does not log)."""
    import logging

    return logging.getLogger("scalable.telemetry")


EventTuple = tuple[float, str, "str | None", dict[str, Any]]


def telemetry_enabled() -> bool:
    return os.environ.get(TELEMETRY_MODE_ENV, "").strip().lower() != "off"


# -- pulling from a scheduler -----------------------------------------------------------


def _call(address: str, security: Any, timeout: float, **kwargs: Any) -> dict[str, Any]:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def go() -> dict[str, Any]:
        from distributed.core import rpc
        from scalable.telemetry.store import PULL_HANDLER

        args = security.get_connection_args("client") if security is not None else {}
        r = rpc(address, connection_args=args, timeout=timeout)
        try:
            result: dict[str, Any] = await asyncio.wait_for(
                getattr(r, PULL_HANDLER)(**kwargs), timeout)
            return result
        finally:
            await r.close_rpc()

    # A thread of its own: the caller may already run an event loop (Jupyter).
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, go()).result()


def pull(db: TelemetryDB, address: str, security: Any = None, *,
         timeout: float = 5.0) -> Run | None:
    """Ask the scheduler at ``address`` for its run; copy a remote run's new records.

    Returns the run (now in ``db``), or None when no telemetry plugin answers.
    """
    from scalable.telemetry import store

    try:
        info = _call(address, security, timeout)
    except Exception as exc:
        _logger().debug("telemetry: no pull from %s: %s", address, exc)
        return None
    r = info["run"]
    memory = info.get("mode") == "memory"
    db.start_run(
        run_id=r["id"], project=r["project"], target=r["target"], provider=r["provider"],
        scheduler_address=r.get("scheduler_address") or address,
        started_at=float(r["started_at"]), source="pulled" if memory else "plugin",
    )
    if memory:
        since = db.pull_cursor(r["id"])
        try:
            data = _call(address, security, timeout, since_events=since[0],
                         since_tasks=since[1])
        except Exception as exc:
            _logger().warning("telemetry: pulling run %s from %s failed: %s", r["id"],
                              address, exc)
            return db.run(r["id"])
        db.apply_pull(
            r["id"], since=since, cursor=(int(data["cursor"][0]), int(data["cursor"][1])),
            events=[(float(e[0]), str(e[1]), e[2], dict(e[3])) for e in data["events"]],
            tasks=[tuple(t) for t in data["tasks"]],
            aggregates=[store.Aggregate.from_dict(a) for a in data["aggregates"]],
        )
        if data["run"].get("ended_at"):
            db.end_run(r["id"], float(data["run"]["ended_at"]))
    return db.run(r["id"])


def current_run(ws: Workspace, state: StateFile | None = None, *,
                refresh: bool = True) -> Run | None:
    """The run of the scheduler ``ws``'s state records (pulling a remote one's records)."""
    if not telemetry_enabled():
        return None
    state = state if state is not None else ws.store.read()
    addr = state.outputs.get(SCHEDULER_ADDRESS) if state is not None else None
    if not addr:
        return None
    from scalable.telemetry.store import TelemetryDB

    db = TelemetryDB.for_root(ws.spec.root)
    run = db.open_run(ws.spec.name, addr) if db.exists else None
    if refresh and (run is None or run.source == "pulled"):
        try:
            security = ws.provider.client_security(state.outputs)  # type: ignore[union-attr]
        except Exception:
            security = None
        run = pull(db, addr, security) or run
    return run


# -- prices ----------------------------------------------------------------------------


def price_table(provider: Provider) -> dict[str, Any]:
    """Hourly price of one Dask worker per group, and of the scheduler (None: unknown)."""
    target = provider.target
    # A group scaled to zero has no resource to price: price one of it.
    one_each = target.with_counts({g.name: max(1, g.count) for g in target.groups})
    workers: dict[str, float | None] = {}
    scheduler: float | None = 0.0
    sources: set[str] = set()
    notes: list[str] = []
    for spec in provider.desired(one_each):
        price = provider.price(spec)
        if price.source:
            sources.add(price.source)
        if price.note and price.hourly is None:
            notes.append(price.note)
        if spec.is_scheduler:
            scheduler = price.hourly
        elif spec.group is not None and spec.group not in workers:
            per = len(spec.worker_names) or 1
            workers[spec.group] = None if price.hourly is None else price.hourly / per
    return {"worker_hourly": workers, "scheduler_hourly": scheduler,
            "source": ", ".join(sorted(sources)), "notes": notes}


# -- the engine's sink -------------------------------------------------------------------


class RunRecorder(Hook):
    """The telemetry hook: records an engine's steps into the target's current run."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.run_id: str | None = None
        self.last_run_id: str | None = None
        self._pending: list[EventTuple] = []
        self._db: TelemetryDB | None = None
        self._priced: str | None = None
        self._warned = False

    @property
    def db(self) -> TelemetryDB:
        if self._db is None:
            from scalable.telemetry.store import TelemetryDB

            self._db = TelemetryDB.for_root(self.ws.spec.root)
        return self._db

    def event(self, payload: Payload) -> None:
        if payload.kind in LIVE_ONLY:  # progress for a live view, not a record
            return
        self(payload.kind, payload.to_data())

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if not telemetry_enabled():
            return
        try:
            self._on(kind, dict(data))
        except Exception as exc:  # telemetry never fails an apply or a destroy
            logger = _logger()
            log = logger.debug if self._warned else logger.warning
            self._warned = True
            log("telemetry: could not record %s in %s: %s", kind, self.db.path, exc)

    def _on(self, kind: str, data: dict[str, Any]) -> None:
        now = time.time()
        self._pending.append((now, kind, None, data))
        is_scheduler = data.get("address") == SCHEDULER
        if kind == RESOURCE_DELETING and is_scheduler:
            # Last chance to copy a remote scheduler's records before it goes. A run its
            # plugin writes here needs none, and may have ended already (the scheduler is
            # asked to stop with the workers): asking it again would wait on a Client's
            # connect timeout.
            rid = self.run_id or self.last_run_id
            known = self.db.run(rid) if rid is not None else None
            if known is None or known.source == "pulled":
                run = self._resolve(ask=True)
                if run is not None and run.source == "pulled" and run.scheduler_address:
                    pull(self.db, run.scheduler_address, self._security())
            self._flush()
        elif kind == RESOURCE_DELETED and is_scheduler:
            run = self._resolve(ask=False)
            # None: its plugin ended the run as the scheduler closed; the steps are its.
            self._flush(fallback=self.last_run_id)
            if run is not None:
                # The plugin ends its own run when its scheduler closes; one still open
                # here died without closing: it ended when it was last heard of.
                # (A pulled or engine-made run ends now: its scheduler just went.)
                if run.source == "plugin" and run.ended_at is None:
                    from scalable.telemetry.report import last_activity

                    self.db.end_run(run.id, min(now, last_activity(self.db, run)))
                else:
                    self.db.end_run(run.id, now)
                self.last_run_id, self.run_id = run.id, None
        elif kind.endswith("_complete") or kind.endswith("_start"):
            self._resolve(ask=True, create=kind == APPLY_COMPLETE)
            self._flush(fallback=self.last_run_id if kind.endswith("_complete") else None)
        else:
            self._resolve(ask=False)
            self._flush()

    def _security(self) -> Any:
        state = self.ws.store.read()
        try:
            return self.ws.provider.client_security(state.outputs if state else {})
        except Exception:
            return None

    def _resolve(self, *, ask: bool, create: bool = False) -> Run | None:
        """Find the current run: the database first, then the scheduler (``ask``)."""
        if self.run_id is not None:
            known = self.db.run(self.run_id)
            if known is not None and known.ended_at is None:
                return known
            # Ended elsewhere (a long-lived engine, e.g. the controller's, outlived it).
            self.last_run_id, self.run_id = self.run_id, None
        state = self.ws.store.read()
        addr = state.outputs.get(SCHEDULER_ADDRESS) if state is not None else None
        if not addr:
            return None
        run = self.db.open_run(self.ws.spec.name, addr)
        if run is None and ask:
            run = pull(self.db, addr, self._security())
        if run is None and create:
            # No plugin answered (a scheduler without it): the steps still get a run.
            started = self._pending[0][0] if self._pending else time.time()
            run = self.db.start_run(
                project=self.ws.spec.project, target=self.ws.spec.name,
                provider=self.ws.spec.provider, scheduler_address=addr,
                started_at=started, source="engine",
            )
        if run is None:
            return None
        self.run_id = run.id
        if run.manifest_digest is None:
            self.db.update_run(run.id, manifest_digest=self.ws.spec.manifest_digest)
        self._record_prices(run.id)
        return run

    def _record_prices(self, run_id: str) -> None:
        if self._priced == run_id:
            return
        self._priced = run_id
        table = price_table(self.ws.provider)
        last = self.db.events(run_id, (PRICING,))
        if not last or last[-1].data != table:
            self._pending.append((time.time(), PRICING, None, table))

    def _flush(self, fallback: str | None = None) -> None:
        run_id = self.run_id or fallback
        if run_id is None or not self._pending:
            return
        pending, self._pending = self._pending, []
        self.db.record_events(run_id, pending)
