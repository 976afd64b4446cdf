"""``ScalableSession``: plan, apply and destroy from Python, over the same engine as the CLI.

``session.plan()`` is ``scalable plan``; ``session.start(plan)`` is ``apply`` plus a
connected client; ``session.close()`` destroys what this session created. Capacity that
the CLI applied is attached to, and left alone on close.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from scalable.addrs import SCHEDULER
from scalable.client import ScalableClient
from scalable.engine import ApplyResult, Engine
from scalable.errors import ScalableError
from scalable.hooks import LogHook
from scalable.manifest.schema import Objectives
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.planning.model import Plan
from scalable.scaling.controller import Controller
from scalable.workspace import Workspace

log = logging.getLogger("scalable")


class SessionError(ScalableError):
    pass


class ScalableSession:
    def __init__(
        self,
        workspace: Workspace,
        *,
        lock_timeout: float = 60.0,
        objectives: dict[str, Any] | None = None,
        tasks: int | None = None,
        tag: str | None = None,
    ) -> None:
        self.workspace = workspace
        self.id = f"session:{uuid.uuid4().hex[:12]}"
        self.lock_timeout = lock_timeout
        self.engine: Engine = workspace.engine(hooks=LogHook(log), owner=self.id)
        self.client: ScalableClient | None = None
        self.controller: Any | None = None
        self.attached = False
        self.result: ApplyResult | None = None
        self.objective: Any | None = None
        self._goal: Any | None = None
        self._tag = tag
        if objectives is not None or workspace.spec.objectives is not None:
            goal = Objectives(**objectives) if objectives else workspace.spec.objectives
            self._goal = goal
            # Chosen once, up front: every plan of this session uses these counts
            # (unless plan(calls=...) re-sizes for the calls not cached).
            wl = workspace.spec.workload
            if tasks is not None or (wl is not None and wl.tasks):
                self.objective = self.engine.plan_objectives(goal, tasks=tasks, tag=tag)

    @classmethod
    def from_yaml(
        cls,
        path: str | os.PathLike[str] = "scalable.yaml",
        target: str | None = None,
        **kwargs: Any,
    ) -> ScalableSession:
        return cls(Workspace.open(path, target), **kwargs)

    @property
    def target(self) -> str:
        return self.workspace.spec.name

    def plan(self, *, destroy: bool = False, calls: Iterable[Any] | None = None) -> Plan:
        """The plan; with ``calls`` (``f.call(...)`` of ``@cacheable`` functions, or
        ``(f, args, kwargs)``), objectives size capacity for the calls not cached."""
        if calls is None or destroy:
            if self._goal is not None and self.objective is None and not destroy:
                # No task count anywhere: plan_objectives says what is missing.
                self.objective = self.engine.plan_objectives(self._goal, tag=self._tag)
            return self.engine.plan(destroy=destroy)
        from scalable.cache.planning import count_cached

        count = count_cached(calls)
        if self._goal is not None and count.misses:
            self.objective = self.engine.plan_objectives(
                self._goal, tasks=count.misses, tag=self._tag, cached=count)
        plan = self.engine.plan()
        plan.cost.notes.append(count.describe())
        log.info("%s", count.describe())
        return plan

    def _cli_owned_and_live(self) -> bool:
        state = self.workspace.store.read()
        if state is None or state.owner == self.id or not state.resources:
            return False
        sched = state.get(SCHEDULER)
        if sched is None:
            return False
        return self.workspace.provider.observe([sched])[SCHEDULER].status == "alive"

    def start(self, plan: Plan | None = None, *, wait: bool = True) -> ScalableClient:
        """Apply ``plan`` (or a fresh one) and return a connected client."""
        if self.client is not None:
            return self.client
        if self._cli_owned_and_live():
            # Someone else (the CLI) applied this target: use it, never provision twice.
            self.attached = True
            log.info("target %s is already applied; attaching", self.target)
        else:
            with self.engine.locked("session start", self.lock_timeout):
                state = self.workspace.store.read()
                if plan is None or (state is not None and state.serial != plan.serial):
                    plan = self.engine.plan()
                self.result = self.engine.execute(plan, wait=wait)
            if self.result.partial:
                raise SessionError("; ".join(self.result.errors),
                                   hint="session.close() tears down what was created")
        self.client = self._connect()
        if self.result is not None and self.result.version_error is not None:
            raise self.result.version_error
        if self.attached:  # capacity made elsewhere: its versions were never checked here
            from scalable.versions import check

            check(self.client, self.engine.hooks)
        if not self.attached:
            # The session's own controller: a thread in this process (CLI-applied capacity
            # has a detached one instead), bound by this session's objectives and budget.
            controller = Controller.for_engine(self.engine)
            if controller.needed:
                self.controller = controller
                controller.start_thread(self.client)
        return self.client

    def _connect(self) -> ScalableClient:
        state = self.workspace.store.read()
        if state is None or SCHEDULER_ADDRESS not in state.outputs:
            raise SessionError(f"target {self.target!r} has no scheduler")
        return ScalableClient(
            state.outputs[SCHEDULER_ADDRESS],
            spec=self.workspace.spec,
            security=self.workspace.provider.client_security(state.outputs),
            set_as_default=True,
        )

    def close(self) -> None:
        """Close the client; destroy the capacity if this session created it."""
        if self.controller is not None:
            self.controller.stop_thread()
            self.controller = None
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.attached:
            return
        with self.engine.locked("session close", self.lock_timeout):
            state = self.workspace.store.read()
            if state is None or state.owner != self.id:
                return
            result = self.engine.execute(self.engine.plan(destroy=True), wait=False)
        if result.partial:
            raise SessionError("destroy was partial: " + "; ".join(result.errors),
                               hint=f"run `scalable destroy -t {self.target}`")

    def __enter__(self) -> ScalableSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
