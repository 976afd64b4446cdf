"""The local provider: a real Dask scheduler and workers as detached processes.

Everything binds 127.0.0.1. ``processes: true`` runs one process per worker (with a
nanny); ``processes: false`` runs one process per group hosting all of that group's
workers as threads-only workers (like ``LocalCluster(processes=False)``), so resizing
such a group replaces its host process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalable import addrs
from scalable.addrs import SCHEDULER
from scalable.outputs import DASHBOARD_URL, SCHEDULER_ADDRESS
from scalable.pricing.estimator import Price, apply_overrides
from scalable.providers.base import (
    CreateContext,
    Created,
    Discovered,
    Observation,
    Provider,
    ProviderError,
    ResourceSpec,
)
from scalable.providers.commands import (
    TELEMETRY_PRELOAD,
    read_scheduler_file,
    scheduler_argv,
    worker_argv,
    worker_names,
)
from scalable.providers.processes import (
    TAG_ADDRESS,
    TAG_KEY,
    TAG_LINEAGE,
    ProcessRef,
    discover_processes,
    observe_process,
    spawn,
    stop_recorded,
    tagged,
    terminate,
)
from scalable.state.model import ResourceRecord
from scalable.tls import ensure_tls

HOST = "127.0.0.1"
PROCESS = "local.process"


class LocalProvider(Provider):
    name = "local"

    def desired(self) -> list[ResourceSpec]:
        out = [
            ResourceSpec(
                address=SCHEDULER,
                type=PROCESS,
                attributes={"role": "scheduler", "host": HOST, "tls": self.target.tls},
            )
        ]
        for g in self.target.groups:
            base = {
                "role": "worker",
                "threads_per_worker": g.threads_per_worker,
                "memory_per_worker": g.memory_per_worker,
                "tags": list(g.tags),
            }
            if g.setting("processes", True):
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
        return self._create_worker(resource, ctx)

    def _create_scheduler(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        sched_file = self.workdir / "scheduler.json"
        log = self.workdir / "logs" / "scheduler.log"
        ref = self._existing(ctx)
        if ref is None:
            sched_file.unlink(missing_ok=True)
            ref = spawn(
                scheduler_argv(
                    host=HOST,
                    scheduler_file=sched_file,
                    preload=self._preload(),
                    tls_args=self._tls_args(),
                ),
                log=log,
                tags=self._tags(resource, ctx),
                env=self._env(ctx),
                cwd=self.workdir,
            )
        try:
            outputs = self._scheduler_outputs(ref)
        except Exception as exc:
            terminate(ref, grace=2)
            raise ProviderError(str(exc), hint=f"see {log}") from None
        return Created(id=ref.id, meta={**ref.meta(), "log": str(log)}, outputs=outputs)

    def _scheduler_outputs(self, ref: ProcessRef) -> dict[str, str]:
        log = self.workdir / "logs" / "scheduler.log"
        info = read_scheduler_file(
            self.workdir / "scheduler.json", timeout=60, alive=ref.alive, log=log
        )
        outputs = {SCHEDULER_ADDRESS: str(info["address"])}
        if self.target.tls:
            outputs.update(ensure_tls(self.workdir / "tls").outputs())
        services: Any = info.get("services") or {}
        if "dashboard" in services:
            outputs[DASHBOARD_URL] = f"http://{HOST}:{services['dashboard']}/status"
        return outputs

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

    def _preload(self) -> list[str]:
        try:
            import importlib.util

            if importlib.util.find_spec(TELEMETRY_PRELOAD) is not None:
                return [TELEMETRY_PRELOAD]
        except ModuleNotFoundError:
            pass
        return []

    def _env(self, ctx: CreateContext) -> dict[str, str]:
        return {
            **self.target.env,
            "SCALABLE_TARGET": self.target.name,
            "SCALABLE_PROJECT": self.target.project,
            "SCALABLE_PROVIDER": self.name,
            "SCALABLE_STATE_DIR": str(self.workdir),
            # Workers must not inherit a parent's scheduler address by accident.
            "DASK_SCHEDULER_ADDRESS": "",
        }

    def _create_worker(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        group = self.target.group(resource.group or "default")
        address = ctx.outputs.get(SCHEDULER_ADDRESS)
        if not address:
            raise ProviderError("no scheduler address to join")
        nworkers = int(resource.attributes.get("workers", 1))
        log = self.workdir / "logs" / f"{resource.address}.log"
        ref = self._existing(ctx)
        if ref is None:
            if resource.attributes.get("processes") is False:
                argv = worker_argv(
                    group, address, name=resource.address, nworkers=nworkers,
                    module="scalable.providers.local_host",
                    local_directory=str(self.workdir / "dask-worker-space"),
                    tls_args=self._tls_args(),
                )
            else:
                argv = worker_argv(
                    group, address, name=resource.address, nworkers=nworkers,
                    local_directory=str(self.workdir / "dask-worker-space"),
                    tls_args=self._tls_args(),
                )
            ref = spawn(argv, log=log, tags=self._tags(resource, ctx), env=self._env(ctx),
                        cwd=self.workdir)
        return Created(id=ref.id, meta={**ref.meta(), "log": str(log)})

    def delete(self, record: ResourceRecord) -> None:
        stop_recorded(record.meta, record.id, grace=10.0)
