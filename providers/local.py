"""The local provider: a real Dask scheduler and workers as detached processes.

Every listener (scheduler, workers, nannies, dashboards) binds the target's ``host``,
127.0.0.1 unless the manifest asks otherwise (and a non-loopback host needs TLS or an
explicit opt-out, checked by the manifest schema). ``processes: true`` runs one process
per worker (with a nanny); ``processes: false`` runs one process per group hosting all
of that group's workers as threads-only workers (like ``LocalCluster(processes=False)``),
so resizing such a group replaces its host process.

The scheduler and the workers start at once: the scheduler's port is chosen up front
(``scheduler_process``), the workers retry their connection, and the scheduler is
confirmed once every worker process has been spawned.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalable import addrs
from scalable.addrs import SCHEDULER
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.pricing.estimator import Price, apply_overrides
from scalable.providers import containers
from scalable.providers.base import (
    CreateContext,
    Created,
    Discovered,
    Observation,
    Provider,
    ProviderError,
    ResourceSpec,
)
from scalable.providers.commands import worker_argv, worker_names
from scalable.providers.local_config import LocalGroup, LocalTarget
from scalable.providers.processes import (
    TAG_ADDRESS,
    TAG_KEY,
    TAG_LINEAGE,
    ProcessRef,
    ask_to_stop,
    discover_processes,
    observe_process,
    recorded_ref,
    spawn,
    stop_recorded,
    tagged,
    terminate,
)
from scalable.providers.scheduler_process import (
    StartedScheduler,
    outputs_from_file,
    process_env,
    start_scheduler,
)
from scalable.spec import TargetSpec
from scalable.state.model import ResourceRecord
from scalable.tls import ensure_tls

HOST = "127.0.0.1"
PROCESS = "local.process"


class LocalProvider(Provider):
    name = "local"
    script_label = "command"  # what ``plan --show-scripts`` prints per worker
    target_model = LocalTarget
    group_model = LocalGroup

    def __init__(self, target: Any, workdir: Any) -> None:
        super().__init__(target, workdir)
        # A scheduler spawned by this apply whose start is confirmed after the workers'.
        self._unconfirmed: StartedScheduler | None = None
        self._asked: set[str] = set()  # processes already sent SIGTERM by prepare_delete
        self._scheduler_going = False  # set by prepare_delete: no roster left to settle

    @staticmethod
    def _dashboard(target: TargetSpec) -> bool:
        return bool(getattr(target.config, "dashboard", True))

    @property
    def host(self) -> str:
        return str(getattr(self.target.config, "host", None) or HOST)

    def desired(self, target: TargetSpec | None = None) -> list[ResourceSpec]:
        target = target or self.target
        out = [
            ResourceSpec(
                address=SCHEDULER,
                type=PROCESS,
                attributes={"role": "scheduler", "host": self.host, "tls": target.tls,
                            "idle_timeout": target.idle_timeout,
                            # Only when off: states applied before the key existed match.
                            **({} if self._dashboard(target) else {"dashboard": False})},
            )
        ]
        for g in target.groups:
            base = {
                "role": "worker",
                "threads_per_worker": g.threads_per_worker,
                "memory_per_worker": g.memory_per_worker,
                "tags": list(g.tags),
            }
            if g.container is not None:
                base["container"] = containers.describe(g.container)
            if g.settings_as(LocalGroup).processes:
                for i in range(g.count):
                    addr = addrs.worker(g.name, i)
                    out.append(
                        ResourceSpec(
                            address=addr, type=PROCESS, group=g.name,
                            attributes={**base, "workers": 1},
                            worker_names=worker_names(addr, 1),
                            depends_on=(SCHEDULER,),
                        )
                    )
            elif g.count:
                addr = addrs.worker(g.name, 0)
                out.append(
                    ResourceSpec(
                        address=addr, type=PROCESS, group=g.name,
                        attributes={**base, "workers": g.count, "processes": False},
                        worker_names=worker_names(addr, g.count),
                        depends_on=(SCHEDULER,),
                    )
                )
        return out

    def startup_seconds(self) -> float:
        return 3.0

    def validate(self) -> None:
        super().validate()
        import shutil

        for g in self.target.groups:
            c = g.container
            if c is not None and shutil.which(c.runtime) is None:
                raise ProviderError(
                    f"group {g.name}: container runtime {c.runtime!r} is not on this "
                    "machine's PATH",
                    hint="install it (bwrap: apt-get install bubblewrap), or choose "
                         "another runtime",
                )
        containers.check_binds(self.target.groups)

    def worker_command(self, resource: ResourceSpec, scheduler_address: str) -> list[str]:
        """The exact argv of a worker process (in its group's container, if any)."""
        group = self.target.group(resource.group or "default")
        dashboard = bool(getattr(self.target.config, "worker_dashboard", False))
        argv = worker_argv(
            group, scheduler_address, name=resource.address,
            nworkers=int(resource.attributes.get("workers", 1)),
            module=("scalable.providers.local_host"
                    if resource.attributes.get("processes") is False
                    else "distributed.cli.dask_worker"),
            host=self.host,
            dashboard=dashboard,
            local_directory=str(self.workdir / "dask-worker-space"),
            tls_args=self._tls_args(),
            python=containers.python_for(group.container, sys.executable),
            quick_exit=group.container is None,  # this interpreter: scalable is there
        )
        env = self._env(None)
        passthrough = sorted({*env, TAG_LINEAGE, TAG_ADDRESS, TAG_KEY})
        return containers.wrap(group.container, argv, system=[str(self.workdir)],
                               passthrough=passthrough)

    def job_script(self, resource: ResourceSpec, *, lineage: str | None = None,
                   key: str | None = None, scheduler_address: str | None = None
                   ) -> str | None:
        """``plan --show-scripts``: a worker's exact command line, shell-quoted."""
        if resource.is_scheduler:
            return None
        import shlex

        return shlex.join(self.worker_command(resource,
                                              scheduler_address or "<scheduler address>"))

    def price(self, resource: ResourceSpec) -> Price:
        return apply_overrides(Price.free("local machine"), self.target.pricing)

    # -- refresh --------------------------------------------------------------------------
    def observe(self, records: Sequence[ResourceRecord]) -> dict[str, Observation]:
        return {rec.address: observe_process(rec.meta) for rec in records}

    def discover(self, lineage: str) -> list[Discovered]:
        return discover_processes(lineage, PROCESS)

    def discover_all(self) -> list[Discovered]:
        # This project's processes only (any target, any lineage): other projects on
        # this machine keep their own states, which this one cannot see.
        root = str(self.workdir.parent)
        return [d for d in discover_processes("", PROCESS)
                if d.home and str(Path(d.home).parent) == root]

    # -- changes --------------------------------------------------------------------------
    def _tags(self, resource: ResourceSpec, ctx: CreateContext) -> dict[str, str]:
        return {
            TAG_LINEAGE: ctx.lineage,
            TAG_ADDRESS: resource.address,
            TAG_KEY: ctx.idempotency_key,
        }

    def _existing(self, ctx: CreateContext) -> ProcessRef | None:
        for ref, tags in tagged(ctx.lineage):
            if tags.get(TAG_KEY) == ctx.idempotency_key:
                return ref
        return None

    def create(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        if resource.is_scheduler:
            return self._create_scheduler(resource, ctx)
        created = self._create_worker(resource, ctx)
        failed = self._confirm_scheduler([created])
        if failed is not None:
            raise failed
        return created

    def create_many(
        self, resources: Sequence[ResourceSpec], contexts: Sequence[CreateContext]
    ) -> list[Created | ProviderError]:
        """Spawn every worker first, then confirm a scheduler started by this apply (so
        its start overlaps theirs); if it failed, stop the workers and say why."""
        out: list[Created | ProviderError] = []
        for res, ctx in zip(resources, contexts, strict=True):
            try:
                out.append(self._create_scheduler(res, ctx) if res.is_scheduler
                           else self._create_worker(res, ctx))
            except ProviderError as exc:
                out.append(exc)
        if all(r.is_scheduler for r in resources):
            return out  # the workers' batch comes next and confirms it
        spawned = [c for r, c in zip(resources, out, strict=True)
                   if isinstance(c, Created) and not r.is_scheduler]
        failed = self._confirm_scheduler(spawned)
        if failed is not None:
            out = [failed if isinstance(c, Created) and not r.is_scheduler else c
                   for r, c in zip(resources, out, strict=True)]
        return out

    def _confirm_scheduler(self, spawned: list[Created]) -> ProviderError | None:
        pending, self._unconfirmed = self._unconfirmed, None
        if pending is None:
            return None
        try:
            pending.confirm(timeout=60)
        except ProviderError as exc:
            for c in spawned:
                stop_recorded(c.meta, c.id, grace=2.0)
            return ProviderError(f"worker stopped: {exc.message}", hint=exc.hint)
        return None

    def _create_scheduler(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        workdir = self.workdir
        log = workdir / "logs" / "scheduler.log"
        ref = self._existing(ctx)
        if ref is not None:  # a retry found the first one: it is (or was) running
            try:
                outputs = self._scheduler_outputs(ref)
            except Exception as exc:
                terminate(ref, grace=2)
                raise ProviderError(str(exc), hint=f"see {log}") from None
            return Created(id=ref.id, meta={**ref.meta(), "log": str(log)}, outputs=outputs)
        started, outputs = start_scheduler(
            host=self.host, workdir=workdir, tags=self._tags(resource, ctx),
            env=self._env(ctx), tls=self.target.tls, tls_args=self._tls_args(),
            idle_timeout=self.target.idle_timeout, dashboard=self._dashboard(self.target),
            roster=self.roster_file(),
        )
        if self.target.tls:
            outputs.update(ensure_tls(workdir / "tls").outputs())
        workers_follow = any(not r.is_scheduler for r in self.desired()) and not any(
            tags.get(TAG_ADDRESS, SCHEDULER) != SCHEDULER for _, tags in tagged(ctx.lineage)
        )
        if workers_follow:
            self._unconfirmed = started
        else:
            started.confirm(timeout=60)
        ref = started.ref
        return Created(id=ref.id, meta={**ref.meta(), "log": str(log)}, outputs=outputs)

    def _scheduler_outputs(self, ref: ProcessRef) -> dict[str, str]:
        log = self.workdir / "logs" / "scheduler.log"
        info = StartedScheduler(ref, self.workdir / "scheduler.json", log).confirm(timeout=60)
        outputs = outputs_from_file(info, dashboard=self._dashboard(self.target))
        if self.target.tls:
            outputs.update(ensure_tls(self.workdir / "tls").outputs())
        return outputs

    def roster_file(self) -> Path:
        return self.workdir / "roster.json"

    def recover_outputs(self, record: ResourceRecord) -> dict[str, str]:
        ref = ProcessRef.from_meta(record.meta)
        if ref is None or not ref.alive():
            return {}
        try:
            return self._scheduler_outputs(ref)
        except Exception:
            return {}

    def _tls_args(self) -> list[str]:
        return ensure_tls(self.workdir / "tls").node_args() if self.target.tls else []

    def _env(self, ctx: CreateContext | None) -> dict[str, str]:
        # Workers must not inherit a parent's scheduler address by accident.
        return {**process_env(self.target, self.name, self.workdir,
                              fork_workers=sys.platform.startswith("linux")),
                "DASK_SCHEDULER_ADDRESS": ""}

    def _create_worker(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        address = ctx.outputs.get(SCHEDULER_ADDRESS)
        if not address:
            raise ProviderError("no scheduler address to join")
        log = self.workdir / "logs" / f"{resource.address}.log"
        ref = self._existing(ctx)
        if ref is None:
            argv = self.worker_command(resource, address)
            ref = spawn(argv, log=log, tags=self._tags(resource, ctx), env=self._env(ctx),
                        cwd=self.workdir)
        return Created(id=ref.id, meta={**ref.meta(), "log": str(log)})

    def prepare_delete(self, records: Sequence[ResourceRecord], *,
                       scheduler: ResourceRecord | None = None) -> None:
        """SIGTERM every worker process at once; ``delete`` then waits for each.

        The scheduler, when it goes too, is not asked here: its step comes after the
        workers' (it is stopped once they have gone). Stopped at the same time as its
        workers, Dask's scheduler races their nannies' close: a worker told to close by
        both sides can hang until its nanny kills it 8 s later (seen in about half of
        the trials, with spawn or fork alike), and its telemetry reads ``lost``. After
        them, it closes in about 0.05 s.
        """
        self._scheduler_going = scheduler is not None
        for rec in records:
            ref = recorded_ref(rec.meta, rec.id)
            if ref is not None:
                ask_to_stop(ref)
                self._asked.add(ref.id)

    def delete(self, record: ResourceRecord) -> None:
        ref = recorded_ref(record.meta, record.id)
        asked = ref is not None and ref.id in self._asked
        stop_recorded(record.meta, record.id, grace=10.0, asked=asked)
        if record.worker_names and not self._scheduler_going:
            self._settle_roster(set(record.worker_names))

    def _settle_roster(self, names: set[str], timeout: float = 2.0) -> None:
        """Wait until the roster no longer lists ``names``: the scheduler writes it
        WRITE_EVERY after a worker leaves, and a worker now exits moments after it has
        left. A replacement of the same name must not be counted ready from the entry
        of the one it replaced. (Bounded: a scheduler that died writes no more.)"""
        from scalable.roster import FileRoster

        roster = FileRoster(self.roster_file())
        deadline = time.monotonic() + timeout
        while names & roster.names() and time.monotonic() < deadline:
            time.sleep(0.02)
