"""The shared batch provider: a Dask scheduler on the login node, workers in batch jobs.

Every batch system (SGE, PBS/Torque, LSF, HTCondor) is this class with a
:class:`~scalable.providers.batch.system.BatchSystem` plugged in. The machinery is the
Slurm provider's, made system-neutral:

- ``scheduler`` (``local.process``): a detached ``dask scheduler`` on this host, bound to
  the ``interface`` address (else this host's outward address), TLS by default.
- ``workers.<group>[i]`` (``<system>.job``): one job per ``processes`` workers, its
  script in dask-jobqueue's format for the system (written by scalable).
- Identity: job name ``scalable-<lineage8>-<group>-<i>`` plus our lineage/address/key in
  the system's comment equivalent (SGE job context, PBS/LSF/HTCondor job attributes).
  Refresh trusts an id only while its job still has the recorded name.
- Walltime → lifetime: workers retire ``lifetime_margin`` before the system kills the job.
- Queue caps: ``max_jobs_queued`` / ``max_jobs_running`` bound how many jobs the target
  has in the system at once; the rest wait in scalable (the plan says how many).
"""

from __future__ import annotations

import dataclasses
import math
import socket
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from scalable import addrs
from scalable.addrs import SCHEDULER
from scalable.manifest.schema import GroupConfig
from scalable.outputs import DASHBOARD_URL, SCHEDULER_ADDRESS
from scalable.pricing.estimator import Price, apply_overrides
from scalable.private_files import write_private
from scalable.providers.base import (
    CreateContext,
    Created,
    Discovered,
    Observation,
    Provider,
    ProviderError,
    ResourceSpec,
)
from scalable.providers.batch.config import BatchGroup, BatchTarget, JobKeys, JobTarget
from scalable.providers.batch.system import (
    LOCAL_DIR,
    BatchJob,
    BatchSystem,
    JobRequest,
    lifetime,
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
from scalable.providers.scheduler_process import process_env
from scalable.spec import GroupSpec, TargetSpec
from scalable.state.model import ResourceRecord
from scalable.tls import ensure_tls, tls_files
from scalable.units import format_size, format_walltime

PROCESS = "local.process"
DEATH_TIMEOUT = 60.0


def job_name(lineage: str, address: str) -> str:
    """``scalable-<lineage8>-<group>-<i>``: unique per state and address."""
    return f"scalable-{lineage[:8]}-{addrs.slug(address)}"


def interface_address(name: str) -> str | None:
    """The IPv4 address of a network interface on this host, or None if it has none."""
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(
                s.fileno(),
                0x8915,  # SIOCGIFADDR
                struct.pack("256s", name[:15].encode()),
            )
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def routable_address() -> str:
    """This host's outward-facing IPv4 (no packet is sent), 127.0.0.1 when offline."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))  # TEST-NET: only picks a route
            addr: str = s.getsockname()[0]
            return addr
        except OSError:
            return "127.0.0.1"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def capped_jobs(
    wanted: list[tuple[GroupSpec, int, int]], cap: int | None, group_order: list[str]
) -> tuple[list[tuple[GroupSpec, int, int]], int]:
    """Keep at most ``cap`` of the wanted (group, index, workers) jobs, groups filled in
    turn so every group gets some capacity; return them and how many wait."""
    if cap is None or len(wanted) <= cap:
        return wanted, 0
    by_group: dict[str, list[tuple[GroupSpec, int, int]]] = {}
    for w in wanted:
        by_group.setdefault(w[0].name, []).append(w)
    kept: list[tuple[GroupSpec, int, int]] = []
    i = 0
    while len(kept) < cap:
        for jobs in by_group.values():
            if i < len(jobs) and len(kept) < cap:
                kept.append(jobs[i])
        i += 1
    kept.sort(key=lambda w: (group_order.index(w[0].name), w[1]))
    return kept, len(wanted) - cap


def cap_notes(cfg: Any, cap: int | None, kept: int, waiting: int, label: str) -> list[str]:
    """The plan's line about jobs held back by ``max_jobs_queued``/``max_jobs_running``."""
    if not waiting or cap is None:
        return []
    key = "max_jobs_queued" if cfg.max_jobs_queued == cap else "max_jobs_running"
    return [
        f"{waiting} job(s) wait: {key}={cap} caps this target at {kept} job(s) in "
        f"{label} at once; the rest are not submitted while the cap holds"
    ]


def observation_of(system: BatchSystem, job: BatchJob) -> Observation:
    details: dict[str, Any] = {"job_id": job.id, "state": job.state, "nodes": job.nodes}
    words = f" ({job.reason})" if job.reason else ""
    if job.phase == "alive":
        where = f" on {job.nodes}" if job.nodes else ""
        return Observation(
            "alive", f"{system.label} job {job.id} {job.state}{where}", details=details
        )
    if job.phase == "pending":
        return Observation(
            "pending", f"{system.label} job {job.id} {job.state}{words}", details=details
        )
    if job.phase == "ending":
        return Observation(
            "gone", f"{system.label} job {job.id} {job.state}: ending{words}", details=details
        )
    return Observation("gone", f"{system.label} job {job.id} {job.state}{words}", details=details)


def _keys(g: GroupSpec) -> JobKeys:
    """A group's job keys (Slurm's model and the batch systems' both extend them)."""
    return g.settings_as(JobKeys)


class BatchProvider(Provider):
    """A provider over one batch system; subclasses set ``system_class`` and ``name``."""

    system_class: ClassVar[type[BatchSystem]]
    target_model: ClassVar[type[JobTarget]] = BatchTarget
    group_model: ClassVar[type[GroupConfig]] = BatchGroup
    _CACHE_SECONDS = 2.0

    def __init__(self, target: Any, workdir: Path) -> None:
        super().__init__(target, workdir)
        self.system = self.system_class()
        self._batch_cache: tuple[float, list[BatchJob]] | None = None
        self._warned: set[str] = set()

    @property
    def cfg(self) -> Any:
        return self.target.config

    @property
    def job_type(self) -> str:
        return self.system.job_type

    # -- where the scheduler listens ----------------------------------------------------
    def scheduler_host(self) -> tuple[str, str | None]:
        iface = self.cfg.interface
        if iface:
            ip = interface_address(iface)
            if ip:
                return ip, None
            return "127.0.0.1", (
                f"interface {iface!r} is not present on this host: the scheduler binds "
                "127.0.0.1, which only workers on this same machine can reach"
            )
        return routable_address(), None

    def _warn(self, text: str | None) -> None:
        if text and text not in self._warned:
            self._warned.add(text)
            self.hooks.warning(text)

    # -- desired ------------------------------------------------------------------------
    def job_cap(self) -> int | None:
        """How many worker jobs the target may have in the system at once (None: any)."""
        caps = [c for c in (self.cfg.max_jobs_queued, self.cfg.max_jobs_running) if c]
        return min(caps) if caps else None

    def _wanted_jobs(self, target: TargetSpec | None = None) -> list[tuple[GroupSpec, int, int]]:
        """(group, job index, workers in it) for every job ``target`` asks for."""
        out = []
        for g in (target or self.target).groups:
            nodes = int(_keys(g).nodes)
            per_job = int(_keys(g).processes) * nodes
            for j in range(math.ceil(g.count / per_job)):
                # An allocation of several nodes is never partial: groups scale in whole
                # allocations (the count rounds up; the plan says so).
                out.append((g, j, per_job if nodes > 1 else min(per_job, g.count - j * per_job)))
        return out

    def capped(self, target: TargetSpec | None = None
               ) -> tuple[list[tuple[GroupSpec, int, int]], int]:
        """The jobs within the cap (groups filled in turn) and how many wait beyond it."""
        return capped_jobs(
            self._wanted_jobs(target), self.job_cap(), [g.name for g in self.target.groups]
        )

    def plan_notes(self) -> list[str]:
        kept, waiting = self.capped()
        return cap_notes(self.cfg, self.job_cap(), len(kept), waiting, self.system.label)

    def desired(self, target: TargetSpec | None = None) -> list[ResourceSpec]:
        out = [
            ResourceSpec(
                address=SCHEDULER,
                type=PROCESS,
                attributes={
                    "role": "scheduler",
                    "placement": "local",
                    "interface": self.cfg.interface,
                    "tls": self.target.tls,
                },
            )
        ]
        kept, _ = self.capped(target)
        for g, j, nw in kept:
            addr = addrs.worker(g.name, j)
            out.append(
                ResourceSpec(
                    address=addr,
                    type=self.job_type,
                    group=g.name,
                    attributes=self._job_attributes(g, nw),
                    worker_names=worker_names(addr, nw),
                    depends_on=(SCHEDULER,),
                )
            )
        return out

    def _shape(self, g: GroupSpec, nworkers: int) -> dict[str, Any]:
        per_job = int(_keys(g).processes)
        cores_cfg = _keys(g).cores
        cores = (
            math.ceil(int(cores_cfg) * nworkers / per_job)
            if cores_cfg
            else nworkers * g.threads_per_worker
        )
        mem_cfg = _keys(g).memory
        per_worker = g.memory_per_worker or (int(mem_cfg) // per_job if mem_cfg else None)
        memory = (
            math.ceil(int(mem_cfg) * nworkers / per_job)
            if mem_cfg
            else (per_worker * nworkers if per_worker else None)
        )
        return {
            "cores": cores,
            "memory": memory,
            "per_worker": per_worker,
            "walltime": int(_keys(g).walltime),
        }

    def _job_attributes(self, g: GroupSpec, nworkers: int) -> dict[str, Any]:
        s = self._shape(g, nworkers)
        attrs: dict[str, Any] = {
            "role": "worker",
            "queue": _keys(g).queue,
            "account": _keys(g).account,
            "walltime": format_walltime(s["walltime"]),
            "cores": s["cores"],
            "memory": format_size(s["memory"]) if s["memory"] else None,
            "workers": nworkers,
            "threads_per_worker": g.threads_per_worker,
            "memory_per_worker": format_size(s["per_worker"]) if s["per_worker"] else None,
            "tags": list(g.tags),
            "core_hours": round(s["cores"] * s["walltime"] / 3600, 4),
        }
        if g.gpus:  # only then: a CPU job's recorded attributes stay as they were
            attrs["gpus"] = g.gpus * int(_keys(g).processes)
            attrs["gpu_type"] = g.gpu_type
        for key in ("resource_spec", "parallel_environment", "disk"):
            if getattr(_keys(g), key, None):
                attrs[key] = getattr(_keys(g), key, None)
        for key in ("job_extra_directives", "job_script_prologue", "worker_extra_args"):
            if values := getattr(_keys(g), key, None):
                attrs[key] = list(values)
        if self.cfg.python:
            attrs["python"] = self.cfg.python
        return attrs

    # -- preflight ----------------------------------------------------------------------
    def validate(self) -> None:
        if self.cfg.containers != "none":
            raise ProviderError(
                f"containers: {self.cfg.containers} is not supported on "
                f"{self.system.label} targets yet",
                hint="use a python: inside the image's environment, or Slurm",
            )
        for g in self.target.groups:
            if g.container is not None:  # never ignored silently
                raise ProviderError(
                    f"group {g.name}: container: is not supported on {self.system.label} "
                    "targets yet",
                    hint="use a python: inside the image's environment, or Slurm",
                )
        for g in self.target.groups:
            if _keys(g).array:
                raise ProviderError(
                    f"group {g.name}: array: true is Slurm-only for now",
                    hint="remove array: (one job per group member)",
                )
            if g.gpus:
                raise ProviderError(
                    f"group {g.name}: gpus: is not supported on {self.system.label} "
                    "targets yet (Slurm, local, EC2 and GKE take it)",
                    hint="request GPUs through resource_spec:/job_extra_directives: and "
                         "advertise them with worker_extra_args: [--resources, GPU=1]",
                )
            if _keys(g).nodes > 1:
                raise ProviderError(
                    f"group {g.name}: nodes: {_keys(g).nodes} (multi-node allocations) is "
                    f"Slurm-only for now",
                    hint=f"remove nodes: — on {self.system.label} each job is one node's "
                         "`processes` workers (see docs/guides/batch-systems)",
                )
            s = self._shape(g, int(_keys(g).processes))
            need = int(_keys(g).processes) * g.threads_per_worker
            if _keys(g).cores and s["cores"] < need:
                raise ProviderError(
                    f"group {g.name}: a job asks for {s['cores']} cores but runs "
                    f"{_keys(g).processes} worker(s) × {g.threads_per_worker} thread(s)",
                    hint="raise cores: or lower processes:/threads_per_worker:",
                )
        self.system.ping()
        self.system.preflight(
            sorted({str(_keys(g).queue) for g in self.target.groups if _keys(g).queue})
        )
        self._warn(self.scheduler_host()[1])

    # -- cost ---------------------------------------------------------------------------
    def price(self, resource: ResourceSpec) -> Price:
        if resource.type != self.job_type:
            return Price.free("the scheduler runs on the submitting host")
        cores = float(resource.attributes.get("cores") or 0)
        base = Price(
            hourly=0.0,
            note="0 USD (no rate set: pricing.core_hour_usd)",
            cores=cores,
            estimate=True,
        )
        price = apply_overrides(base, self.target.pricing, cores)
        if not price.cores:
            price = dataclasses.replace(price, cores=cores)
        return price

    def horizon_hours(self) -> float | None:
        walltimes = [int(_keys(g).walltime) for g in self.target.groups if g.count]
        return max(walltimes) / 3600 if walltimes else None

    # -- refresh ------------------------------------------------------------------------
    def _batch_jobs(self, fresh: bool = False) -> list[BatchJob]:
        now = time.monotonic()
        if not fresh and self._batch_cache and now - self._batch_cache[0] < self._CACHE_SECONDS:
            return self._batch_cache[1]
        jobs = self.system.list_jobs()
        self._batch_cache = (now, jobs)
        return jobs

    def _batch_record_job(self, rec: ResourceRecord, by_id: dict[str, BatchJob]) -> BatchJob | None:
        job = by_id.get(rec.id or str(rec.meta.get("job_id") or ""))
        expected = rec.meta.get("job_name")
        if job is None or (expected and job.name != expected):
            return None
        return job

    def observe(self, records: Sequence[ResourceRecord]) -> dict[str, Observation]:
        out: dict[str, Observation] = {}
        by_id: dict[str, BatchJob] | None = None
        label = self.system.label
        for rec in records:
            if rec.type == PROCESS:
                out[rec.address] = observe_process(rec.meta)
                continue
            if by_id is None:
                by_id = {j.id: j for j in self._batch_jobs()}
            job_id = rec.id or str(rec.meta.get("job_id") or "")
            if not job_id:
                out[rec.address] = Observation("gone", "never submitted")
                continue
            job = by_id.get(job_id)
            expected = rec.meta.get("job_name")
            if job is None:
                why = self.system.ended(job_id)
                out[rec.address] = Observation(
                    "gone",
                    f"{label} job {job_id} ended: {why}"
                    if why
                    else f"{label} job {job_id} is no longer listed ({self.system.status_prog})",
                )
            elif expected and job.name != expected:
                out[rec.address] = Observation(
                    "gone",
                    f"{label} job id {job_id} now belongs to another job "
                    f"({job.name!r}, not {expected!r}): job ids restarted",
                )
            else:
                out[rec.address] = observation_of(self.system, job)
        return out

    def discover(self, lineage: str) -> list[Discovered]:
        found = discover_processes(lineage, PROCESS)
        for job in self._batch_jobs():
            ident = job.identity
            if not ident or ident.get("lineage") != lineage or not job.active:
                continue
            found.append(
                Discovered(
                    address=ident["address"],
                    type=self.job_type,
                    id=job.id,
                    idempotency_key=ident["key"],
                    meta={"job_id": job.id, "job_name": job.name},
                    status="alive" if job.phase == "alive" else "pending",
                )
            )
        return found

    # -- scripts ------------------------------------------------------------------------
    def _python(self) -> str:
        return str(self.cfg.python or sys.executable)

    def _job_env(self) -> dict[str, str]:
        return process_env(self.target, self.name, self.workdir)

    def _tls_args(self, create: bool = False) -> list[str]:
        if not self.target.tls:
            return []
        if create:
            host, _ = self.scheduler_host()
            return ensure_tls(self.workdir / "tls", hosts=[host]).node_args()
        return tls_files(self.workdir / "tls").node_args()

    @property
    def log_directory(self) -> Path:
        """Where job scripts send the jobs' output (made before any submit)."""
        return self.workdir / "logs"

    def job_request(
        self,
        resource: ResourceSpec,
        *,
        lineage: str | None = None,
        key: str | None = None,
        scheduler_address: str | None = None,
    ) -> JobRequest:
        g = self.target.group(resource.group or "default")
        nw = int(resource.attributes.get("workers", 1))
        s = self._shape(g, nw)
        life, stagger = lifetime(s["walltime"], self.cfg.lifetime_margin)
        group = dataclasses.replace(g, memory_per_worker=s["per_worker"])
        argv = worker_argv(
            group,
            scheduler_address or "<scheduler address>",
            name=resource.address,
            nworkers=nw,
            death_timeout=DEATH_TIMEOUT,
            lifetime=life,
            lifetime_stagger=stagger,
            tls_args=self._tls_args(),
            local_directory=LOCAL_DIR,
            python=self._python(),
        )
        if self.cfg.interface and interface_address(self.cfg.interface):
            argv += ["--interface", self.cfg.interface]
        name = (
            job_name(lineage, resource.address)
            if lineage
            else f"scalable-<lineage8>-{addrs.slug(resource.address)}"
        )
        return JobRequest(
            name=name,
            identity={
                "lineage": lineage or "<lineage>",
                "address": resource.address,
                "key": key or "<key>",
            },
            queue=_keys(g).queue,
            account=_keys(g).account,
            walltime=s["walltime"],
            cores=s["cores"],
            memory=s["memory"],
            log_directory=str(self.log_directory),
            command=argv,
            extra_directives=list(_keys(g).job_extra_directives),
            prologue=list(_keys(g).job_script_prologue),
            env=self._job_env(),
            python=self._python(),
            resource_spec=getattr(_keys(g), "resource_spec", None),
            parallel_environment=getattr(_keys(g), "parallel_environment", None),
            disk=getattr(_keys(g), "disk", None),
        )

    def job_script(
        self,
        resource: ResourceSpec,
        *,
        lineage: str | None = None,
        key: str | None = None,
        scheduler_address: str | None = None,
    ) -> str | None:
        """The exact script the job for ``resource`` gets (None: not a job)."""
        if resource.type != self.job_type:
            return None
        return self.system.render(
            self.job_request(
                resource, lineage=lineage, key=key, scheduler_address=scheduler_address
            )
        )

    # -- changes ------------------------------------------------------------------------
    def create(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        out = self.create_many([resource], [ctx])[0]
        if isinstance(out, ProviderError):
            raise out
        return out

    def create_many(
        self, resources: Sequence[ResourceSpec], contexts: Sequence[CreateContext]
    ) -> list[Created | ProviderError]:
        """Scripts are written here (on this thread), submits run in parallel."""
        results: list[Created | ProviderError | None] = [None] * len(resources)
        todo: list[tuple[int, Path, dict[str, Any]]] = []
        existing: dict[str, BatchJob] | None = None
        for i, (res, ctx) in enumerate(zip(resources, contexts, strict=True)):
            try:
                if res.is_scheduler:
                    results[i] = self._create_scheduler(res, ctx)
                    continue
                if existing is None:
                    jobs = self._batch_jobs(fresh=True)
                    ours = [
                        j for j in jobs if j.identity and j.identity.get("lineage") == ctx.lineage
                    ]
                    # A job stuck in the queue (SGE's Eqw) was planned as gone and is being
                    # replaced: delete it now, or it would sit there for ever.
                    self.system.cancel([j.id for j in ours if j.stuck])
                    existing = {
                        j.identity["key"]: j
                        for j in ours
                        if j.identity and j.active and not j.stuck
                    }
                address = ctx.outputs.get(SCHEDULER_ADDRESS)
                if not address:
                    raise ProviderError("no scheduler address to join")
                name = job_name(ctx.lineage, res.address)
                path = (
                    self.workdir
                    / "jobs"
                    / f"{name}-{ctx.idempotency_key[-8:]}{self.system.script_suffix()}"
                )
                text = self.job_script(
                    res, lineage=ctx.lineage, key=ctx.idempotency_key, scheduler_address=address
                )
                # The log folder the script names must exist before the job starts (a
                # system fails a job it cannot open its output file in); the script is
                # private: its export lines carry env: values.
                self.log_directory.mkdir(parents=True, exist_ok=True)
                write_private(path, text or "")
                meta: dict[str, Any] = {
                    "job_name": name,
                    "script": str(path),
                    "queue": res.attributes.get("queue"),
                }
                found = existing.get(ctx.idempotency_key)
                if found is not None:  # a retry: the first submission went through
                    results[i] = Created(id=found.id, meta={**meta, "job_id": found.id})
                else:
                    todo.append((i, path, meta))
            except ProviderError as exc:
                results[i] = exc
        if todo:
            with ThreadPoolExecutor(max_workers=min(16, len(todo))) as pool:
                futures = [(i, meta, pool.submit(self._submit, path)) for i, path, meta in todo]
                for i, meta, fut in futures:
                    try:
                        job_id = fut.result()
                    except ProviderError as exc:
                        results[i] = exc
                        continue
                    results[i] = Created(
                        id=job_id,
                        meta={**meta, "job_id": job_id, "log": str(self.log_directory)},
                    )
        self._batch_cache = None
        return [r if r is not None else ProviderError("not attempted") for r in results]

    def _submit(self, path: Path) -> str:
        return self.system.submit(path, cwd=self.workdir, env={"DASK_SCHEDULER_ADDRESS": ""})

    def _create_scheduler(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        host, warning = self.scheduler_host()
        self._warn(warning)
        sched_file = self.workdir / "scheduler.json"
        log = self.workdir / "logs" / "scheduler.log"
        outputs: dict[str, str] = {}
        if self.target.tls:
            outputs.update(ensure_tls(self.workdir / "tls", hosts=[host]).outputs())
        ref = next(
            (r for r, tags in tagged(ctx.lineage) if tags.get(TAG_KEY) == ctx.idempotency_key), None
        )
        if ref is None:
            port, dash = free_port(host), free_port(host)
            sched_file.unlink(missing_ok=True)
            ref = spawn(
                scheduler_argv(
                    host=host,
                    port=port,
                    dashboard_port=dash,
                    scheduler_file=sched_file,
                    preload=self._preload(),
                    tls_args=self._tls_args(create=True),
                ),
                log=log,
                tags={
                    TAG_LINEAGE: ctx.lineage,
                    TAG_ADDRESS: resource.address,
                    TAG_KEY: ctx.idempotency_key,
                },
                env={**self._job_env(), "DASK_SCHEDULER_ADDRESS": ""},
                cwd=self.workdir,
            )
            outputs[DASHBOARD_URL] = f"http://{host}:{dash}/status"
        info = self._confirm_started(ref, sched_file, log)
        outputs[SCHEDULER_ADDRESS] = str(info["address"])
        meta = {
            **ref.meta(),
            "log": str(log),
            "host": socket.gethostname(),
            "address": outputs[SCHEDULER_ADDRESS],
        }
        return Created(id=ref.id, meta=meta, outputs=outputs)

    @staticmethod
    def _confirm_started(ref: ProcessRef, sched_file: Path, log: Path) -> Any:
        try:
            return read_scheduler_file(sched_file, timeout=120, alive=ref.alive, log=log)
        except Exception as exc:
            terminate(ref, grace=2)
            raise ProviderError(str(exc), hint=f"see {log}") from None

    def _preload(self) -> list[str]:
        import importlib.util

        try:
            if importlib.util.find_spec(TELEMETRY_PRELOAD) is not None:
                return [TELEMETRY_PRELOAD]
        except ModuleNotFoundError:
            pass
        return []

    # -- deletes ------------------------------------------------------------------------
    def prepare_delete(self, records: Sequence[ResourceRecord], *,
                       scheduler: ResourceRecord | None = None) -> None:
        """Cancel pending jobs first (so none starts as others leave), then running ones."""
        recs = [r for r in records if r.type == self.job_type]
        if not recs:
            return
        by_id = {j.id: j for j in self._batch_jobs(fresh=True)}
        jobs = [j for j in (self._batch_record_job(r, by_id) for r in recs) if j and j.active]
        self.system.cancel([j.id for j in jobs if j.phase == "pending"])
        self.system.cancel([j.id for j in jobs if j.phase != "pending"])
        self._batch_cache = None

    def delete(self, record: ResourceRecord, timeout: float = 120.0) -> None:
        if record.type == PROCESS:
            stop_recorded(record.meta, record.id, grace=10.0)
            return
        deadline = time.monotonic() + timeout
        cancelled = False
        while True:
            job = self._batch_record_job(record, {j.id: j for j in self._batch_jobs(fresh=True)})
            if job is None or not (job.active or job.phase == "ending"):
                break
            if not cancelled and job.phase != "ending":
                self.system.cancel([job.id])
                cancelled = True
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"{self.system.label} job {job.id} is still {job.state} after {timeout:.0f}s",
                    hint=f"{' '.join(self.system.cancel_argv([job.id]))}; then re-run",
                )
            time.sleep(0.5)
        self._batch_cache = None
        script = record.meta.get("script")
        if isinstance(script, str):
            Path(script).unlink(missing_ok=True)
