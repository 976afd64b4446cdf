"""The Slurm provider: a Dask scheduler on the submitting host, workers in Slurm jobs.

Resources:

- ``scheduler`` (``local.process``): a detached ``dask scheduler`` on this host (the
  login node), bound to the ``interface`` address, TLS by default — the same process
  machinery as the local provider (``providers/processes.py``, ``providers/commands.py``).
- ``workers.<group>[i]`` (``slurm.job``): one batch job per ``processes`` workers. Its
  script comes from dask-jobqueue's ``SLURMJob`` (see ``script.py``).

Identity: every job carries the job name ``scalable-<lineage8>-<group>-<i>``, a
``--comment`` ``scalable;lineage=…;address=…;key=…`` and ``--wckey scalable-<lineage8>``.
State keeps the job id *and* name; refresh only trusts an id whose job still has that
name (ids restart after a Slurm reinstall and may point at someone else's job).
"""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from scalable import addrs
from scalable.addrs import SCHEDULER
from scalable.manifest.schema import SlurmTarget
from scalable.outputs import SCHEDULER_ADDRESS
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
    stop_recorded,
    tagged,
)
from scalable.providers.scheduler_process import (
    StartedScheduler,
    outputs_from_file,
    preload,
    process_env,
    start_scheduler,
)
from scalable.providers.slurm import commands as slurm
from scalable.providers.slurm import script as scripts
from scalable.spec import GroupSpec
from scalable.state.model import ResourceRecord
from scalable.tls import ensure_tls, security_from_outputs, tls_files
from scalable.units import format_size, format_walltime

JOB = "slurm.job"
PROCESS = "local.process"
DEATH_TIMEOUT = 60.0
# How long apply waits for a scheduler job to start and write its scheduler file.
SCHEDULER_JOB_TIMEOUT = 600.0
# Slurm job states, as refresh reports them.
PENDING_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED",
                            "REQUEUE_HOLD", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED"})
ALIVE_STATES = frozenset({"RUNNING", "RESIZING", "SIGNALING", "STAGE_OUT"})
GONE_WORDS = {
    "TIMEOUT": "walltime reached",
    "CANCELLED": "cancelled",
    "FAILED": "the job script failed",
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "OUT_OF_MEMORY": "out of memory",
    "PREEMPTED": "preempted",
    "DEADLINE": "deadline reached",
    "COMPLETED": "its workers exited (lifetime reached or scheduler gone)",
    "COMPLETING": "ending",
}


def observation_of(job: slurm.Job) -> Observation:
    """Map one squeue row to alive / pending / gone, with Slurm's own words."""
    details: dict[str, Any] = {"job_id": job.id, "state": job.state, "reason": job.reason,
                               "nodes": job.nodes}
    reason = job.reason if job.reason not in ("", "None", "(null)") else ""
    if job.state in ALIVE_STATES:
        return Observation("alive", f"Slurm job {job.id} {job.state} on {job.nodes}",
                           details=details)
    if job.state in PENDING_STATES:
        text = f"Slurm job {job.id} {job.state}"
        if reason:
            text += f" ({reason})"
        if job.start and job.start not in ("N/A", "Unknown", "None"):
            details["expected_start"] = job.start
            text += f", expected start {job.start}"
        return Observation("pending", text, details=details)
    words = GONE_WORDS.get(job.state, job.state.lower().replace("_", " "))
    text = f"Slurm job {job.id} {job.state}: {words}"
    if reason and job.state not in ("COMPLETED", "TIMEOUT"):
        text += f" ({reason})"
    return Observation("gone", text, details=details)


def interface_address(name: str) -> str | None:
    """The IPv4 address of a network interface on this host, or None if it has none."""
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), 0x8915,  # SIOCGIFADDR
                                 struct.pack("256s", name[:15].encode()))
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


class SlurmProvider(Provider):
    name = "slurm"
    # A squeue listing is reused for this long within one plan (observe + discover).
    _CACHE_SECONDS = 2.0

    def __init__(self, target: Any, workdir: Path) -> None:
        super().__init__(target, workdir)
        self._jobs_cache: tuple[float, list[slurm.Job]] | None = None
        # A scheduler started by this apply, confirmed once the jobs are submitted.
        self._unconfirmed: StartedScheduler | None = None
        self._warned: set[str] = set()

    @property
    def cfg(self) -> SlurmTarget:
        return cast(SlurmTarget, self.target.config)

    # -- where the scheduler listens ----------------------------------------------------
    def scheduler_host(self) -> tuple[str, str | None]:
        """(address to bind, warning or None)."""
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
            sys.stderr.write(f"Warning: {text}\n")

    # -- desired ------------------------------------------------------------------------
    @property
    def in_job(self) -> bool:
        """Whether the scheduler runs in a Slurm job (``scheduler: {placement: job}``)."""
        return self.cfg.scheduler.placement == "job"

    def _scheduler_walltime(self) -> int:
        """A scheduler job lives as long as the longest worker job may."""
        return max([int(self.cfg.walltime)]
                   + [int(g.setting("walltime", 3600)) for g in self.target.groups])

    def desired(self) -> list[ResourceSpec]:
        if self.in_job:
            wall = self._scheduler_walltime()
            sched = ResourceSpec(
                address=SCHEDULER, type=JOB,
                attributes={"role": "scheduler", "placement": "job",
                            "partition": self.cfg.queue, "account": self.cfg.account,
                            "walltime": format_walltime(wall), "cores": 1,
                            "interface": self.cfg.interface, "tls": self.target.tls,
                            "core_hours": round(wall / 3600, 4)},
            )
        else:
            # The bind address is a fact of the host apply runs on, kept in the record's
            # meta: a plan from another login node must not see it as a change.
            sched = ResourceSpec(
                address=SCHEDULER, type=PROCESS,
                attributes={"role": "scheduler", "placement": "local",
                            "interface": self.cfg.interface, "tls": self.target.tls},
            )
        out = [sched]
        for g in self.target.groups:
            per_job = int(g.setting("processes", 1))
            for j in range(math.ceil(g.count / per_job)):
                nw = min(per_job, g.count - j * per_job)
                addr = addrs.worker(g.name, j)
                out.append(
                    ResourceSpec(
                        address=addr, type=JOB, group=g.name,
                        attributes=self._job_attributes(g, nw),
                        worker_names=worker_names(addr, nw),
                        depends_on=(SCHEDULER,),
                    )
                )
        return out

    def _shape(self, g: GroupSpec, nworkers: int) -> dict[str, Any]:
        """Cores, memory and walltime of a job hosting ``nworkers`` of group ``g``."""
        per_job = int(g.setting("processes", 1))
        cores_cfg = g.setting("cores")
        cores = (math.ceil(int(cores_cfg) * nworkers / per_job) if cores_cfg
                 else nworkers * g.threads_per_worker)
        mem_cfg = g.setting("memory")
        per_worker = g.memory_per_worker or (int(mem_cfg) // per_job if mem_cfg else None)
        memory = (math.ceil(int(mem_cfg) * nworkers / per_job) if mem_cfg
                  else (per_worker * nworkers if per_worker else None))
        return {"cores": cores, "memory": memory, "per_worker": per_worker,
                "walltime": int(g.setting("walltime", 3600))}

    def _job_attributes(self, g: GroupSpec, nworkers: int) -> dict[str, Any]:
        s = self._shape(g, nworkers)
        attrs: dict[str, Any] = {
            "role": "worker",
            "partition": g.setting("queue"),
            "account": g.setting("account"),
            "walltime": format_walltime(s["walltime"]),
            "cores": s["cores"],
            "memory": format_size(s["memory"]) if s["memory"] else None,
            "workers": nworkers,
            "threads_per_worker": g.threads_per_worker,
            "memory_per_worker": format_size(s["per_worker"]) if s["per_worker"] else None,
            "tags": list(g.tags),
            "core_hours": round(s["cores"] * s["walltime"] / 3600, 4),
        }
        extra = list(g.setting("job_extra_directives", []))
        prologue = list(g.setting("job_script_prologue", []))
        if extra:
            attrs["job_extra_directives"] = extra
        if prologue:
            attrs["job_script_prologue"] = prologue
        if self.cfg.containers == "apptainer":
            attrs["image"] = self.cfg.image
        if self.cfg.python:
            attrs["python"] = self.cfg.python
        if g.setting("worker_extra_args"):
            attrs["worker_extra_args"] = list(g.setting("worker_extra_args"))
        return attrs

    # -- preflight ----------------------------------------------------------------------
    def validate(self) -> None:
        cfg = self.cfg
        if cfg.containers == "docker":
            raise ProviderError("containers: docker is not supported on Slurm",
                                hint="use containers: apptainer (with image:)")
        if cfg.containers == "apptainer" and not cfg.image:
            raise ProviderError("containers: apptainer needs an image:",
                                hint="e.g. image: docker://ghcr.io/dask/dask:latest or a .sif")
        for g in self.target.groups:
            s = self._shape(g, int(g.setting("processes", 1)))
            need = int(g.setting("processes", 1)) * g.threads_per_worker
            if g.setting("cores") and s["cores"] < need:
                raise ProviderError(
                    f"group {g.name}: a job asks for {s['cores']} cores but runs "
                    f"{g.setting('processes', 1)} worker(s) × {g.threads_per_worker} thread(s)",
                    hint="raise cores: or lower processes:/threads_per_worker:",
                )
        slurm.require_sbatch()
        slurm.ping()
        parts = slurm.partitions()
        default = next((p for p in parts.values() if p.default), None)
        checked: set[tuple[Any, ...]] = set()
        for g in self.target.groups:
            queue = g.setting("queue")
            part = parts.get(queue) if queue else default
            walltime = int(g.setting("walltime", 3600))
            if part is not None and part.max_time is not None and walltime > part.max_time:
                raise ProviderError(
                    f"group {g.name}: walltime {format_walltime(walltime)} is over partition "
                    f"{part.name}'s MaxTime {format_walltime(part.max_time)} (from sinfo)",
                    hint="lower walltime: or choose a partition with a longer MaxTime "
                         "(`sinfo -o '%P %l'`)",
                )
            options = self._test_options(g)
            if tuple(options) in checked:
                continue
            checked.add(tuple(options))
            # Slurm itself judges partition, account and node shape; its words pass through.
            try:
                slurm.test_only(options, cwd=self.target.root)
            except ProviderError as exc:
                raise ProviderError(f"group {g.name}: {exc.message}", hint=exc.hint) from None
        if self.in_job:
            wall = self._scheduler_walltime()
            part = parts.get(cfg.queue) if cfg.queue else default
            if part is not None and part.max_time is not None and wall > part.max_time:
                raise ProviderError(
                    f"the scheduler job's walltime {format_walltime(wall)} (the longest of "
                    f"the groups') is over partition {part.name}'s MaxTime "
                    f"{format_walltime(part.max_time)} (from sinfo)",
                    hint="lower the walltimes, or use scheduler: {placement: local}",
                )
        else:
            self._warn(self.scheduler_host()[1])

    def _test_options(self, g: GroupSpec) -> list[str]:
        import shlex

        s = self._shape(g, int(g.setting("processes", 1)))
        opts = ["-n", "1", "--cpus-per-task", str(s["cores"]),
                "-t", format_walltime(s["walltime"])]
        if g.setting("queue"):
            opts += ["-p", str(g.setting("queue"))]
        if g.setting("account"):
            opts += ["-A", str(g.setting("account"))]
        if s["memory"]:
            opts += ["--mem", scripts.mem_directive(s["memory"])]
        for d in g.setting("job_extra_directives", []):
            opts += shlex.split(d)
        return opts

    # -- cost ---------------------------------------------------------------------------
    def price(self, resource: ResourceSpec) -> Price:
        if resource.type != JOB:
            return Price.free("the scheduler runs on the submitting host")
        cores = float(resource.attributes.get("cores") or 0)
        base = Price(hourly=0.0, note="0 USD (no rate set: pricing.core_hour_usd)",
                     cores=cores, estimate=True)
        price = apply_overrides(base, self.target.pricing, cores)
        if not price.cores:
            price = dataclasses.replace(price, cores=cores)
        return price

    def horizon_hours(self) -> float | None:
        walltimes = [int(g.setting("walltime", 3600)) for g in self.target.groups if g.count]
        return max(walltimes) / 3600 if walltimes else None

    # -- refresh ------------------------------------------------------------------------
    def _jobs(self, fresh: bool = False) -> list[slurm.Job]:
        now = time.monotonic()
        if not fresh and self._jobs_cache and now - self._jobs_cache[0] < self._CACHE_SECONDS:
            return self._jobs_cache[1]
        jobs = slurm.squeue(all_states=True, mine=True)
        self._jobs_cache = (now, jobs)
        return jobs

    def _record_job(self, rec: ResourceRecord, by_id: dict[str, slurm.Job]) -> slurm.Job | None:
        """The squeue row of a record's job, only if it still carries our job name."""
        job_id = rec.id or str(rec.meta.get("job_id") or "")
        job = by_id.get(job_id)
        expected = rec.meta.get("job_name")
        if job is None or (expected and job.name != expected):
            return None
        return job

    def observe(self, records: Sequence[ResourceRecord]) -> dict[str, Observation]:
        out: dict[str, Observation] = {}
        by_id: dict[str, slurm.Job] | None = None
        for rec in records:
            if rec.type == PROCESS:
                out[rec.address] = self._elsewhere(rec) or observe_process(rec.meta)
                continue
            if by_id is None:
                by_id = {j.id: j for j in self._jobs()}
            job_id = rec.id or str(rec.meta.get("job_id") or "")
            if not job_id:
                out[rec.address] = Observation("gone", "never submitted")
                continue
            job = by_id.get(job_id)
            expected = rec.meta.get("job_name")
            if job is None:
                out[rec.address] = Observation(
                    "gone", f"Slurm job {job_id} is no longer listed by squeue "
                            "(ended longer ago than MinJobAge, or Slurm's state was reset)")
            elif expected and job.name != expected:
                out[rec.address] = Observation(
                    "gone", f"Slurm job id {job_id} now belongs to another job "
                            f"({job.name!r}, not {expected!r}): Slurm's job ids restarted")
            else:
                out[rec.address] = observation_of(job)
        return out

    def discover_all(self) -> list[Discovered]:
        return self._discover(None)

    def discover(self, lineage: str) -> list[Discovered]:
        return self._discover(lineage)

    def _discover(self, lineage: str | None) -> list[Discovered]:
        found = discover_processes(lineage or "", PROCESS)
        for job in self._jobs():
            fields = scripts.parse_comment(job.comment)
            if fields is None or not job.active:
                continue
            if lineage is not None and fields["lineage"] != lineage:
                continue
            obs = observation_of(job)
            found.append(
                Discovered(
                    address=fields["address"], type=JOB, id=job.id,
                    idempotency_key=fields["key"],
                    meta={"job_id": job.id, "job_name": job.name},
                    status=obs.status if obs.status != "gone" else "alive",
                    lineage=fields["lineage"],
                )
            )
        return found

    # -- scripts ------------------------------------------------------------------------
    def job_script(
        self,
        resource: ResourceSpec,
        *,
        lineage: str | None = None,
        key: str | None = None,
        scheduler_address: str | None = None,
    ) -> str | None:
        """The exact batch script the job for ``resource`` gets (None: not a job).

        Values that exist only at apply time are shown as ``<…>`` placeholders: the
        idempotency key always, the lineage before the state's first write, the
        scheduler address before the scheduler runs.
        """
        if resource.type != JOB:
            return None
        if resource.is_scheduler:
            return self._scheduler_script(lineage, key)
        g = self.target.group(resource.group or "default")
        nw = int(resource.attributes.get("workers", 1))
        s = self._shape(g, nw)
        name, comment, wckey = self._identity(lineage, resource.address, key)
        shape = scripts.JobShape(
            job_name=name,
            comment=comment,
            wckey=wckey,
            partition=g.setting("queue"),
            account=g.setting("account"),
            walltime=s["walltime"],
            cores=s["cores"],
            memory=s["memory"],
            log_directory=str(self.workdir / "logs"),
            worker_command=self._worker_command(
                g, nw, resource.address, scheduler_address or "<scheduler address>", s),
            extra_directives=list(g.setting("job_extra_directives", [])),
            prologue=list(g.setting("job_script_prologue", [])),
            env=self._job_env(),
            python=self._python(),
        )
        return scripts.render(shape)

    def _identity(self, lineage: str | None, address: str, key: str | None
                  ) -> tuple[str, str, str]:
        """Job name, comment and wckey; ``<…>`` placeholders before apply."""
        name = (scripts.job_name(lineage, address) if lineage
                else f"scalable-<lineage8>-{addrs.slug(address)}")
        return (name, scripts.comment(lineage or "<lineage>", address, key or "<key>"),
                scripts.wckey(lineage) if lineage else "scalable-<lineage8>")

    def _scheduler_script(self, lineage: str | None, key: str | None) -> str:
        """The batch script of a scheduler job: it writes ``scheduler.json`` on the shared
        file system, which apply waits for."""
        name, comment, wckey = self._identity(lineage, SCHEDULER, key)
        argv = scheduler_argv(host=scripts.HOST_VAR, scheduler_file=self.workdir / "scheduler.json",
                              preload=preload(), tls_args=self._tls_args(),
                              python=self._python())
        if self.cfg.containers == "apptainer" and self.cfg.image:
            argv = scripts.apptainer_wrap(argv, self.cfg.image, binds=[str(self.workdir)])
        shape = scripts.JobShape(
            job_name=name, comment=comment, wckey=wckey,
            partition=self.cfg.queue, account=self.cfg.account,
            walltime=self._scheduler_walltime(), cores=1, memory=None,
            log_directory=str(self.workdir / "logs"),
            worker_command=argv,
            extra_directives=list(self.cfg.job_extra_directives),
            prologue=[*self.cfg.job_script_prologue,
                      scripts.host_line(self.cfg.interface)],
            env=self._job_env(),
            python=self._python(),
        )
        return scripts.render(shape)

    def _create_scheduler_job(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        """Submit the scheduler's job and wait (up to SCHEDULER_JOB_TIMEOUT) for it to
        write its scheduler file; cancel it if it does not."""
        sched_file = self.workdir / "scheduler.json"
        existing = self._by_key(ctx.lineage).get(ctx.idempotency_key)
        name, _, _ = self._identity(ctx.lineage, SCHEDULER, ctx.idempotency_key)
        path = self.workdir / "jobs" / f"{name}-{ctx.idempotency_key[-8:]}.sbatch"
        if self.target.tls:
            ensure_tls(self.workdir / "tls")
        if existing is None:
            sched_file.unlink(missing_ok=True)
            text = self._scheduler_script(ctx.lineage, ctx.idempotency_key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            job_id = slurm.sbatch(path, cwd=self.workdir, env={"DASK_SCHEDULER_ADDRESS": ""})
        else:
            job_id = existing.id
        meta: dict[str, Any] = {"job_id": job_id, "job_name": name, "script": str(path),
                                "log": str(self.workdir / "logs" / f"{name}-{job_id}.err")}
        deadline = time.monotonic() + SCHEDULER_JOB_TIMEOUT
        last: slurm.Job | None = None
        while True:
            try:
                info = json.loads(sched_file.read_text())
                if info.get("address"):
                    break
            except (FileNotFoundError, ValueError):
                pass
            last = next((j for j in self._jobs(fresh=True) if j.id == job_id), None)
            ended = last is None or not last.active
            if ended or time.monotonic() > deadline:
                slurm.scancel([job_id])
                why = (observation_of(last).reason if last is not None
                       else f"Slurm job {job_id} vanished")
                raise ProviderError(
                    f"the scheduler job did not start a scheduler"
                    f"{'' if ended else f' within {SCHEDULER_JOB_TIMEOUT:.0f}s'}: {why}",
                    hint=f"see {meta['log']}",
                )
            time.sleep(1.0)
        outputs = outputs_from_file(info)
        if self.target.tls:
            outputs.update(ensure_tls(self.workdir / "tls").outputs())
        self._jobs_cache = None
        return Created(id=job_id, meta=meta, outputs=outputs)

    def _python(self) -> str:
        if self.cfg.python:
            return self.cfg.python
        return "python3" if self.cfg.containers == "apptainer" else sys.executable

    def _job_env(self) -> dict[str, str]:
        return process_env(self.target, self.name, self.workdir)

    def _worker_command(
        self, g: GroupSpec, nworkers: int, address: str, scheduler_address: str,
        shape: dict[str, Any],
    ) -> list[str]:
        life, stagger = scripts.lifetime(shape["walltime"], self.cfg.lifetime_margin)
        group = dataclasses.replace(g, memory_per_worker=shape["per_worker"])
        argv = worker_argv(
            group, scheduler_address, name=address, nworkers=nworkers,
            death_timeout=DEATH_TIMEOUT, lifetime=life, lifetime_stagger=stagger,
            tls_args=self._tls_args(), local_directory=scripts.LOCAL_DIR,
            python=self._python(),
        )
        iface = self.cfg.interface
        if iface and interface_address(iface):
            argv += ["--interface", iface]
        if self.cfg.containers == "apptainer" and self.cfg.image:
            argv = scripts.apptainer_wrap(argv, self.cfg.image, binds=[str(self.workdir)])
        return argv

    def _tls_args(self, create: bool = False) -> list[str]:
        """Node certificate flags; the files are made at apply, not by a plan."""
        if not self.target.tls:
            return []
        if create:
            host, _ = self.scheduler_host()
            return ensure_tls(self.workdir / "tls", hosts=[host]).node_args()
        return tls_files(self.workdir / "tls").node_args()

    # -- changes ------------------------------------------------------------------------
    def create(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        out = self.create_many([resource], [ctx])[0]
        if isinstance(out, ProviderError):
            raise out
        return out

    def create_many(
        self, resources: Sequence[ResourceSpec], contexts: Sequence[CreateContext]
    ) -> list[Created | ProviderError]:
        """Jobs are submitted in parallel: apply takes about as long as the slowest sbatch.

        Scripts are written first, on this thread (dask-jobqueue must be imported on the
        main thread); only the ``sbatch`` calls run in a thread pool.
        """
        results: list[Created | ProviderError | None] = [None] * len(resources)
        todo: list[tuple[int, Path, dict[str, Any]]] = []
        existing: dict[str, slurm.Job] | None = None
        for i, (res, ctx) in enumerate(zip(resources, contexts, strict=True)):
            try:
                if res.is_scheduler:
                    results[i] = (self._create_scheduler_job(res, ctx) if res.type == JOB
                                  else self._create_scheduler(res, ctx))
                    continue
                if existing is None:
                    existing = self._by_key(ctx.lineage)
                found = existing.get(ctx.idempotency_key)
                path, meta = self._write_script(res, ctx)
                if found is not None:  # a retry: the first submission went through
                    results[i] = Created(id=found.id, meta={**meta, "job_id": found.id})
                else:
                    todo.append((i, path, meta))
            except ProviderError as exc:
                results[i] = exc
        if todo:
            with ThreadPoolExecutor(max_workers=min(16, len(todo))) as pool:
                futures = [
                    (i, meta, pool.submit(slurm.sbatch, path, cwd=self.workdir,
                                          env={"DASK_SCHEDULER_ADDRESS": ""}))
                    for i, path, meta in todo
                ]
                for i, meta, fut in futures:
                    try:
                        job_id = fut.result()
                    except ProviderError as exc:
                        results[i] = exc
                        continue
                    log = self.workdir / "logs" / f"{meta['job_name']}-{job_id}.err"
                    results[i] = Created(id=job_id,
                                         meta={**meta, "job_id": job_id, "log": str(log)})
        jobs = [i for i, r in enumerate(resources) if r.type == JOB and not r.is_scheduler]
        if jobs:
            created = [i for i in jobs if isinstance(results[i], Created)]
            failed = self._confirm_scheduler([cast(Created, results[i]).id for i in created])
            if failed is not None:
                for i in created:
                    results[i] = failed
        self._jobs_cache = None
        return [r if r is not None else ProviderError("not attempted") for r in results]

    def _by_key(self, lineage: str) -> dict[str, slurm.Job]:
        """Our live jobs of this lineage by idempotency key (a retried create finds them)."""
        out: dict[str, slurm.Job] = {}
        for job in self._jobs(fresh=True):
            fields = scripts.parse_comment(job.comment)
            if fields and fields["lineage"] == lineage and job.active:
                out[fields["key"]] = job
        return out

    def _write_script(self, resource: ResourceSpec, ctx: CreateContext
                      ) -> tuple[Path, dict[str, Any]]:
        name = scripts.job_name(ctx.lineage, resource.address)
        path = self.workdir / "jobs" / f"{name}-{ctx.idempotency_key[-8:]}.sbatch"
        meta: dict[str, Any] = {"job_name": name, "script": str(path),
                                "partition": resource.attributes.get("partition")}
        address = ctx.outputs.get(SCHEDULER_ADDRESS)
        if not address:
            raise ProviderError("no scheduler address to join")
        text = self.job_script(resource, lineage=ctx.lineage, key=ctx.idempotency_key,
                               scheduler_address=address)
        assert text is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path, meta

    def _create_scheduler(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        """Start the scheduler on a port chosen up front.

        The address is known before the process is up, so the jobs can be submitted
        while the scheduler is still importing: apply costs max(scheduler start, job
        start), not their sum. The scheduler is confirmed (its scheduler file, written
        once it listens) right after the jobs are submitted; if it failed, the jobs are
        cancelled and the failure reported. Without jobs to submit it is confirmed here.
        """
        host, warning = self.scheduler_host()
        self._warn(warning)
        sched_file = self.workdir / "scheduler.json"
        log = self.workdir / "logs" / "scheduler.log"
        ref = next((r for r, tags in tagged(ctx.lineage)
                    if tags.get(TAG_KEY) == ctx.idempotency_key), None)
        outputs: dict[str, str] = {}
        if self.target.tls:
            outputs.update(ensure_tls(self.workdir / "tls", hosts=[host]).outputs())
        if ref is not None:  # a retry found the first one: it is (or was) running
            info = self._confirm(ref, sched_file, log)
            outputs[SCHEDULER_ADDRESS] = str(info["address"])
            return Created(id=ref.id, meta=self._sched_meta(ref, log, outputs), outputs=outputs)
        started, more = start_scheduler(
            host=host, workdir=self.workdir,
            tags={TAG_LINEAGE: ctx.lineage, TAG_ADDRESS: resource.address,
                  TAG_KEY: ctx.idempotency_key},
            env=self._job_env(), tls=self.target.tls, tls_args=self._tls_args(create=True),
        )
        outputs.update(more)
        if any(r.type == JOB for r in self.desired()):
            self._unconfirmed = started
        else:
            started.confirm()
        ref = started.ref
        return Created(id=ref.id, meta=self._sched_meta(ref, log, outputs), outputs=outputs)

    @staticmethod
    def _sched_meta(ref: ProcessRef, log: Path, outputs: dict[str, str]) -> dict[str, Any]:
        return {**ref.meta(), "log": str(log), "host": socket.gethostname(),
                "address": outputs[SCHEDULER_ADDRESS]}

    def _elsewhere(self, rec: ResourceRecord) -> Observation | None:
        """For a scheduler started on another host (login nodes behind one alias): is it
        answering? A PID means nothing here. None when it was started on this host."""
        host = rec.meta.get("host")
        address = str(rec.meta.get("address") or "")
        if not host or host == socket.gethostname():
            return None
        where = address.split("://", 1)[-1]
        ip, _, port = where.rpartition(":")
        try:
            with socket.create_connection((ip, int(port)), timeout=5):
                pass
        except (OSError, ValueError):
            return Observation("gone", f"the scheduler started on {host} does not answer at "
                                       f"{address}")
        return Observation("alive", f"running on {host} (checked over the network)",
                           details={"host": host})

    def _stop_remote_scheduler(self, rec: ResourceRecord) -> None:
        """Ask a scheduler on another host to shut down (over TLS when it uses TLS)."""
        obs = self._elsewhere(rec)
        if obs is None or obs.status == "gone":
            return
        from distributed import Client

        tls = tls_files(self.workdir / "tls")
        security = security_from_outputs({"tls_ca_file": str(tls.ca_file),
                                          "tls_client_cert": str(tls.client_cert),
                                          "tls_client_key": str(tls.client_key)}
                                         ) if self.target.tls else None
        try:
            with Client(str(rec.meta["address"]), security=security, timeout=15,
                        set_as_default=False) as client:
                client.shutdown()
        except Exception as exc:
            raise ProviderError(
                f"the scheduler runs on {rec.meta.get('host')} and could not be stopped "
                f"from here: {exc}",
                hint=f"run destroy on {rec.meta.get('host')}, or kill pid "
                     f"{rec.meta.get('pid')} there",
            ) from None

    def _confirm(self, ref: ProcessRef, sched_file: Path, log: Path) -> Any:
        """Wait for the scheduler's file; stop the process and raise if it failed."""
        return StartedScheduler(ref, sched_file, log).confirm()

    def _confirm_scheduler(self, submitted: list[str]) -> ProviderError | None:
        """Confirm a scheduler started by this apply; cancel ``submitted`` if it failed."""
        pending, self._unconfirmed = self._unconfirmed, None
        if pending is None:
            return None
        try:
            pending.confirm()
        except ProviderError as exc:
            slurm.scancel(submitted)
            return ProviderError(f"job cancelled: {exc.message}", hint=exc.hint)
        return None

    # -- deletes ------------------------------------------------------------------------
    def prepare_delete(self, records: Sequence[ResourceRecord]) -> None:
        """Cancel pending jobs first (so none starts as others leave), then running ones."""
        recs = [r for r in records if r.type == JOB]
        if not recs:
            return
        by_id = {j.id: j for j in self._jobs(fresh=True)}
        jobs = [j for j in (self._record_job(r, by_id) for r in recs) if j and j.active]
        slurm.scancel([j.id for j in jobs if j.state in PENDING_STATES])
        slurm.scancel([j.id for j in jobs if j.state not in PENDING_STATES
                       and j.state != "COMPLETING"])
        self._jobs_cache = None

    def delete(self, record: ResourceRecord, timeout: float = 120.0) -> None:
        if record.type == PROCESS:
            if self._elsewhere(record) is not None:
                self._stop_remote_scheduler(record)
                return
            stop_recorded(record.meta, record.id, grace=10.0)
            return
        deadline = time.monotonic() + timeout
        cancelled = False
        while True:
            by_id = {j.id: j for j in self._jobs(fresh=True)}
            job = self._record_job(record, by_id)
            if job is None or not job.active:
                break
            if not cancelled and job.state != "COMPLETING":
                slurm.scancel([job.id])
                cancelled = True
            if time.monotonic() > deadline:
                raise ProviderError(f"Slurm job {job.id} is still {job.state} after "
                                    f"{timeout:.0f}s", hint=f"scancel {job.id}; then re-run")
            time.sleep(0.5)
        self._jobs_cache = None
        script = record.meta.get("script")
        if isinstance(script, str):
            Path(script).unlink(missing_ok=True)
