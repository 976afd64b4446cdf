"""The Slurm provider: a Dask scheduler on the submitting host, workers in Slurm jobs.

Resources:

- ``scheduler`` (``local.process``): a detached ``dask scheduler`` on this host (the
  login node), bound to the ``interface`` address, TLS by default — the same process
  machinery as the local provider (``providers/processes.py``, ``providers/commands.py``).
- ``workers.<group>[i]`` (``slurm.job``): one batch job per ``processes`` workers. Its
  script comes from dask-jobqueue's ``SLURMJob`` (see ``script.py``).
- With ``nodes: K`` a ``workers.<group>[i]`` is one *allocation*: a job of K nodes whose
  script runs ``srun`` with one task per node, each ``dask worker --nworkers P``; its
  K×P workers are ``workers.<group>[i]-<node>-<k>``. Refresh counts them on the
  scheduler: a running allocation short of workers is drift (replaced by the plan).

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
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.pricing.estimator import Price
from scalable.private_files import write_private
from scalable.providers import containers
from scalable.providers.base import (
    CreateContext,
    Created,
    Discovered,
    Observation,
    ProviderError,
    ResourceSpec,
)
from scalable.providers.batch.provider import (
    BatchProvider,
    interface_address,
)
from scalable.providers.commands import (
    allocation_worker_names,
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
from scalable.providers.slurm.config import SlurmGroup, SlurmTarget
from scalable.providers.slurm.system import ALIVE_STATES, PENDING_STATES, SlurmSystem
from scalable.spec import GroupSpec, TargetSpec
from scalable.state.model import ResourceRecord
from scalable.tls import ensure_tls, tls_files
from scalable.units import format_walltime

JOB = "slurm.job"
PROCESS = "local.process"
DEATH_TIMEOUT = 60.0
# How long apply waits for a scheduler job to start and write its scheduler file.
SCHEDULER_JOB_TIMEOUT = 600.0
# Slurm job states, as refresh reports them: PENDING_STATES and ALIVE_STATES (system.py).
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


def _keys(g: GroupSpec) -> SlurmGroup:
    return g.settings_as(SlurmGroup)


def gres(g: GroupSpec) -> str | None:
    """The job's ``--gres`` value: ``gpu[:type]:N`` for the ``processes`` workers of one
    job, each with ``gpus`` GPUs. ``--gres`` (per node; our jobs are one task on one node)
    works on every Slurm with GRES configured; ``--gpus-per-task`` needs
    select/cons_tres and adds nothing for a one-task job, so it is not used."""
    if not g.gpus:
        return None
    n = g.gpus * int(_keys(g).processes)
    return f"gpu:{g.gpu_type}:{n}" if g.gpu_type else f"gpu:{n}"


def gres_directives(g: GroupSpec) -> list[str]:
    found = gres(g)
    return [f"--gres={found}"] if found else []


def _running_for(start: str) -> float | None:
    """Seconds since squeue's StartTime (local time, ``2026-12-01T18:02:12``)."""
    from datetime import datetime

    try:
        return (datetime.now() - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


class SlurmProvider(BatchProvider):
    """Slurm over the shared batch base (``providers/batch``): shapes, prices, caps, the
    scheduler's address, TLS flags and job environment are the base's; arrays, the
    scheduler in a job, ``--test-only`` preflight and squeue refresh are Slurm's own."""

    system_class = SlurmSystem
    name = "slurm"
    target_model = SlurmTarget
    group_model = SlurmGroup
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
        return self.target.config_as(SlurmTarget)

    # -- desired ------------------------------------------------------------------------
    @property
    def in_job(self) -> bool:
        """Whether the scheduler runs in a Slurm job (``scheduler: {placement: job}``)."""
        return self.cfg.scheduler.placement == "job"

    def _scheduler_walltime(self) -> int:
        """A scheduler job lives as long as the longest worker job may."""
        return max([int(self.cfg.walltime)]
                   + [int(_keys(g).walltime) for g in self.target.groups])

    def desired(self, target: TargetSpec | None = None) -> list[ResourceSpec]:
        target = target or self.target
        if self.in_job:
            wall = self._scheduler_walltime()
            sched = ResourceSpec(
                address=SCHEDULER, type=JOB,
                attributes={"role": "scheduler", "placement": "job",
                            "partition": self.cfg.queue, "account": self.cfg.account,
                            "walltime": format_walltime(wall), "cores": 1,
                            "interface": self.cfg.interface, "tls": target.tls,
                            "idle_timeout": target.idle_timeout,
                            "core_hours": round(wall / 3600, 4)},
            )
        else:
            # The bind address is a fact of the host apply runs on, kept in the record's
            # meta: a plan from another login node must not see it as a change.
            sched = ResourceSpec(
                address=SCHEDULER, type=PROCESS,
                attributes={"role": "scheduler", "placement": "local",
                            "interface": self.cfg.interface, "tls": target.tls,
                            "idle_timeout": target.idle_timeout},
            )
        out = [sched]
        kept, _ = self.capped(target)
        for g, j, nw in kept:
            addr = addrs.worker(g.name, j)
            nodes = int(_keys(g).nodes)
            names = (allocation_worker_names(addr, nodes, int(_keys(g).processes))
                     if nodes > 1 else worker_names(addr, nw))
            out.append(
                ResourceSpec(
                    address=addr, type=JOB, group=g.name,
                    attributes=self._job_attributes(g, nw),
                    worker_names=names,
                    depends_on=(SCHEDULER,),
                )
            )
        return out

    # -- arrays and queue caps ----------------------------------------------------------
    def job_cap(self) -> int | None:
        """Jobs (array tasks count one each, as in Slurm's own limits) the target may have
        in Slurm at once. ``max_jobs_running`` caps non-array groups here; an array's
        tasks are all queued and Slurm runs at most that many (``--array=…%M``)."""
        caps = [self.cfg.max_jobs_queued]
        if any(not _keys(g).array for g in self.target.groups):
            caps.append(self.cfg.max_jobs_running)
        known = [c for c in caps if c]
        return min(known) if known else None

    def plan_notes(self) -> list[str]:
        kept, _ = self.capped()
        notes = super().plan_notes()
        for g in self.target.groups:
            tasks = [j for gg, j, _ in kept if gg.name == g.name]
            if _keys(g).array and tasks:
                spec = scripts.array_spec(tasks, self.cfg.max_jobs_running)
                notes.append(f"workers.{g.name}: 1 array of {len(tasks)} tasks "
                             f"(sbatch --array={spec})")
            nodes, per_node = int(_keys(g).nodes), int(_keys(g).processes)
            if nodes > 1 and tasks:
                total = len(tasks) * nodes * per_node
                n = len(tasks)
                note = (f"workers.{g.name}: {n} allocation{'s' if n != 1 else ''} × {nodes} "
                        f"nodes × {per_node} worker{'s' if per_node != 1 else ''} = {total} "
                        f"workers (sbatch --nodes={nodes}, srun: one task per node)")
                if total > g.count:
                    note += (f"; {g.count} asked for, rounded up: a group scales in whole "
                             f"allocations of {nodes * per_node}")
                notes.append(note)
        return notes

    def _job_attributes(self, g: GroupSpec, nworkers: int) -> dict[str, Any]:
        nodes = int(_keys(g).nodes)
        per_node = int(_keys(g).processes)
        # The base's attributes, in Slurm's word for a queue, plus what only Slurm has.
        # An allocation's shape is one node's (cores, memory) times its nodes.
        base = super()._job_attributes(g, per_node if nodes > 1 else nworkers)
        attrs = {("partition" if k == "queue" else k): v for k, v in base.items()}
        if nodes > 1:
            s = self._shape(g, per_node)
            attrs.update(
                nodes=nodes,
                workers_per_node=per_node,
                workers=nodes * per_node,
                cores_per_node=s["cores"],
                cores=nodes * s["cores"],
                memory_per_node=attrs.pop("memory"),
                core_hours=round(nodes * s["cores"] * s["walltime"] / 3600, 4),
                node_hours=round(nodes * s["walltime"] / 3600, 4),
            )
        if _keys(g).array:
            attrs["array"] = True
        if g.container is not None:
            # Kept as before for a target-wide apptainer image (no replacement of running
            # jobs on upgrade); the full block for everything else.
            if g.container.runtime == "apptainer" and not (
                    g.container.binds or g.container.env or g.container.options):
                attrs["image"] = g.container.image
            else:
                attrs["container"] = containers.describe(g.container)
        return attrs

    def price(self, resource: ResourceSpec) -> Price:
        price = super().price(resource)
        nodes = resource.attributes.get("nodes")
        return dataclasses.replace(price, nodes=float(nodes)) if nodes else price

    # -- preflight ----------------------------------------------------------------------
    def check_config(self) -> None:
        cfg = self.cfg
        if cfg.containers == "docker":
            raise ProviderError("containers: docker is not supported on Slurm",
                                hint="use containers: apptainer (with image:)")
        if cfg.containers == "apptainer" and not cfg.image:
            raise ProviderError("containers: apptainer needs an image:",
                                hint="e.g. image: docker://ghcr.io/dask/dask:latest or a .sif")
        for g in self.target.groups:
            if g.container is not None and g.container.runtime == "docker":
                raise ProviderError(
                    f"group {g.name}: container runtime docker is not supported on Slurm "
                    "(it needs a root daemon on every node)",
                    hint="use runtime: podman, apptainer or bwrap")
            if _keys(g).nodes > 1 and _keys(g).array:
                raise ProviderError(
                    f"group {g.name}: nodes: {_keys(g).nodes} and array: true together are "
                    "not supported",
                    hint="choose one: an array of one-node jobs, or multi-node allocations",
                )
            s = self._shape(g, int(_keys(g).processes))
            need = int(_keys(g).processes) * g.threads_per_worker
            if _keys(g).cores and s["cores"] < need:
                raise ProviderError(
                    f"group {g.name}: a job asks for {s['cores']} cores but runs "
                    f"{_keys(g).processes} worker(s) × {g.threads_per_worker} thread(s)",
                    hint="raise cores: or lower processes:/threads_per_worker:",
                )

    def validate(self) -> None:
        self.check_config()
        cfg = self.cfg
        # Binds are checked from this (login) node: the shared filesystem looks the same
        # from the compute nodes.
        containers.check_binds(self.target.groups, on="the login node")
        slurm.require_sbatch()
        slurm.ping()
        parts = slurm.partitions()
        default = next((p for p in parts.values() if p.default), None)
        checked: set[tuple[Any, ...]] = set()
        for g in self.target.groups:
            queue = _keys(g).queue
            part = parts.get(queue) if queue else default
            walltime = int(_keys(g).walltime)
            if part is not None and part.max_time is not None and walltime > part.max_time:
                raise ProviderError(
                    f"group {g.name}: walltime {format_walltime(walltime)} is over partition "
                    f"{part.name}'s MaxTime {format_walltime(part.max_time)} (from sinfo)",
                    hint="lower walltime: or choose a partition with a longer MaxTime "
                         "(`sinfo -o '%P %l'`)",
                )
            if g.gpus:
                self._check_gpus(g, part)
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

    @staticmethod
    def _check_gpus(g: GroupSpec, part: slurm.Partition | None) -> None:
        """A GPU type the partition lacks, or more GPUs than one node has, is refused
        here with what the partition does have (``sinfo -o %G``): ``sbatch --test-only``
        says only "Requested node configuration is not available"."""
        if part is None:
            return  # no partition named and no default: --test-only speaks next
        have = ", ".join(f"{t or '(untyped)'}:{n}" for t, n in sorted(part.gpus.items()))
        need = g.gpus * int(_keys(g).processes)
        if not part.gpus:
            raise ProviderError(
                f"group {g.name}: asks for {need} GPU(s) but partition {part.name} has no "
                "GPUs (sinfo Gres: none)",
                hint="choose a partition with GPUs (`sinfo -o '%P %G'`) in queue:",
            )
        if g.gpu_type and g.gpu_type not in part.gpus:
            raise ProviderError(
                f"group {g.name}: gpu_type {g.gpu_type!r} is not in partition {part.name} "
                f"(its GPU types: {', '.join(sorted(t for t in part.gpus if t)) or 'untyped'})",
                hint=f"set gpu_type: to one of them, or another queue: (sinfo Gres: {have})",
            )
        if need > part.gpu_count(g.gpu_type):
            raise ProviderError(
                f"group {g.name}: a job asks for {need} GPU(s) ({_keys(g).processes} "
                f"worker(s) × {g.gpus}) but a node of partition {part.name} has "
                f"{part.gpu_count(g.gpu_type)} (sinfo Gres: {have})",
                hint="lower gpus: or processes:",
            )

    def _test_options(self, g: GroupSpec) -> list[str]:
        import shlex

        s = self._shape(g, int(_keys(g).processes))
        nodes = int(_keys(g).nodes)
        # Slurm judges an allocation's shape too: "Requested node configuration is not
        # available" when the partition has fewer than `nodes` nodes of that size.
        layout = ["-N", str(nodes), "--ntasks-per-node", "1"] if nodes > 1 else ["-n", "1"]
        opts = [*layout, "--cpus-per-task", str(s["cores"]),
                "-t", format_walltime(s["walltime"])]
        if _keys(g).queue:
            opts += ["-p", str(_keys(g).queue)]
        if _keys(g).account:
            opts += ["-A", str(_keys(g).account)]
        if _keys(g).array and g.count:
            # Slurm judges the array too (MaxArraySize: "Invalid job array specification").
            tasks = math.ceil(g.count / int(_keys(g).processes))
            opts += ["--array", scripts.array_spec(list(range(tasks)),
                                                   self.cfg.max_jobs_running)]
        if s["memory"]:
            opts += ["--mem", scripts.mem_directive(s["memory"])]
        opts += gres_directives(g)
        for d in _keys(g).job_extra_directives:
            opts += shlex.split(d)
        return opts

    # -- cost ---------------------------------------------------------------------------
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
        allocations: list[tuple[ResourceRecord, slurm.Job]] = []
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
                if rec.attributes.get("nodes") and out[rec.address].status == "alive":
                    allocations.append((rec, job))
        if allocations:
            self._count_workers(records, allocations, out)
        return out

    def _count_workers(self, records: Sequence[ResourceRecord],
                       allocations: list[tuple[ResourceRecord, slurm.Job]],
                       out: dict[str, Observation]) -> None:
        """Count each running allocation's workers on the scheduler. One short of them
        (a node lost, a worker crashed past its nanny) once past ``allocation_grace`` is
        drift: its ``workers`` attribute as found, so the plan replaces the allocation;
        before that, the allocation is pending (capacity on its way)."""
        names = self._connected_workers(records)
        if names is None:
            return  # no scheduler to ask (stopped, or on another host): cannot tell
        for rec, job in allocations:
            obs = out[rec.address]
            expected = int(rec.attributes.get("workers") or len(rec.worker_names))
            have = len(set(rec.worker_names) & names)
            obs.details["workers_connected"] = have
            if have >= expected:
                obs.reason += f"; {have}/{expected} workers connected"
                continue
            ran = _running_for(job.start)
            if ran is not None and ran >= self.cfg.allocation_grace:
                out[rec.address] = Observation(
                    "alive",
                    f"{obs.reason}; only {have}/{expected} workers connected "
                    "(the others ended)",
                    details=obs.details, attributes={"workers": have})
            else:
                # Capacity on its way, not a change: the plan shows it and waits.
                out[rec.address] = Observation(
                    "pending", f"{obs.reason}; {have}/{expected} workers connected so far "
                               "(starting)", details=obs.details)

    def _connected_workers(self, records: Sequence[ResourceRecord]) -> set[str] | None:
        """The names of the workers connected to this target's scheduler (None: unknown)."""
        sched = next((r for r in records if r.address == SCHEDULER), None)
        address = str(sched.meta.get("address") or "") if sched is not None else ""
        if not address:
            try:
                address = str(json.loads((self.workdir / "scheduler.json").read_text())
                              .get("address") or "")
            except (OSError, ValueError):
                return None
        if not address:
            return None
        # distributed costs ~300 ms to import: only for targets with running allocations.
        from distributed import Client

        security = tls_files(self.workdir / "tls").client_security() if self.target.tls else None
        try:
            with Client(address, security=security, timeout=10,
                        set_as_default=False) as client:
                info = client.scheduler_info(n_workers=-1)["workers"]
        except Exception:  # a refresh never fails on this: the count is unknown
            return None
        return {str(w.get("name")) for w in info.values()}

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
            task = scripts.task_identity(fields, job.array_task)
            if "tasks" in fields and task is None:
                continue  # a task of ours that no record asked for: not an address
            address, key = task or (fields["address"], fields["key"])
            found.append(
                Discovered(
                    address=address, type=JOB, id=job.id,
                    idempotency_key=key,
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
        if resource.attributes.get("array"):
            index = int(resource.address.rpartition("[")[2].rstrip("]"))
            return self._array_script(g, resource, {index: key or "<key>"}, lineage,
                                      scheduler_address)
        nodes = int(resource.attributes.get("nodes") or 1)
        # An allocation's shape is per node: `workers_per_node` workers on each.
        nw = int(resource.attributes.get("workers_per_node" if nodes > 1 else "workers", 1))
        s = self._shape(g, nw)
        name, comment, wckey = self._identity(lineage, resource.address, key)
        worker = self._worker_command(
            g, nw, resource.address, scheduler_address or "<scheduler address>", s)
        if nodes > 1:
            worker = scripts.srun_argv(worker, resource.address, nodes, s["cores"])
        shape = scripts.JobShape(
            job_name=name,
            comment=comment,
            wckey=wckey,
            partition=_keys(g).queue,
            account=_keys(g).account,
            walltime=s["walltime"],
            cores=s["cores"],
            memory=s["memory"],
            log_directory=str(self.log_directory),
            worker_command=worker,
            extra_directives=[*gres_directives(g), *_keys(g).job_extra_directives],
            prologue=list(_keys(g).job_script_prologue),
            env=self._job_env(),
            python=self._python(g.container),
            nodes=nodes,
        )
        return scripts.render(shape)

    def _array_script(self, g: GroupSpec, resource: ResourceSpec, keys: dict[int, str],
                      lineage: str | None, scheduler_address: str | None) -> str:
        """One ``sbatch --array`` script for the tasks ``keys`` (index → idempotency key)
        of group ``g``: every task runs the same shape, its worker named by its index."""
        nw = int(resource.attributes.get("workers", 1))
        s = self._shape(g, nw)
        name = (scripts.job_name(lineage, f"workers.{g.name}") if lineage
                else f"scalable-<lineage8>-{g.name}")
        task_address = f"workers.{g.name}[{scripts.TASK_VAR}]"
        spec = scripts.array_spec(list(keys), self.cfg.max_jobs_running)
        shape = scripts.JobShape(
            job_name=name,
            comment=scripts.array_comment(lineage or "<lineage>", g.name, keys),
            wckey=scripts.wckey(lineage) if lineage else "scalable-<lineage8>",
            partition=_keys(g).queue,
            account=_keys(g).account,
            walltime=s["walltime"],
            cores=s["cores"],
            memory=s["memory"],
            log_directory=str(self.log_directory),
            worker_command=self._worker_command(
                g, nw, task_address, scheduler_address or "<scheduler address>", s),
            extra_directives=[f"--array={spec}", *gres_directives(g),
                              *_keys(g).job_extra_directives],
            prologue=list(_keys(g).job_script_prologue),
            env=self._job_env(),
            python=self._python(g.container),
        )
        return scripts.render(shape)

    def _submit_arrays(self, batches: dict[tuple[str, str], list[tuple[int, ResourceSpec,
                                                                       CreateContext]]],
                       results: list[Created | ProviderError | None]) -> None:
        """One sbatch per (group, shape): the tasks' records get ``<array id>_<index>``."""
        for (group, _), items in batches.items():
            g = self.target.group(group)
            keys = {int(r.address.rpartition("[")[2].rstrip("]")): c.idempotency_key
                    for _, r, c in items}
            ctx = items[0][2]
            try:
                address = ctx.outputs.get("scheduler_address")
                if not address:
                    raise ProviderError("no scheduler address to join")
                text = self._array_script(g, items[0][1], keys, ctx.lineage, address)
                name = scripts.job_name(ctx.lineage, f"workers.{group}")
                path = self.workdir / "jobs" / f"{name}-{ctx.idempotency_key[-8:]}.sbatch"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                array_id = slurm.sbatch(path, cwd=self.workdir,
                                        env={"DASK_SCHEDULER_ADDRESS": ""})
            except ProviderError as exc:
                for i, _, _ in items:
                    results[i] = exc
                continue
            for i, res, _ in items:
                index = int(res.address.rpartition("[")[2].rstrip("]"))
                task_id = f"{array_id}_{index}"
                results[i] = Created(id=task_id, meta={
                    "job_id": task_id, "job_name": name, "script": str(path),
                    "array_id": array_id, "partition": res.attributes.get("partition"),
                    "log": str(self.workdir / "logs")})

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
                              python=self._python(self.cfg.default_container()),
                              idle_timeout=self.target.idle_timeout)
        argv = containers.wrap(self.cfg.default_container(), argv, system=[str(self.workdir)])
        shape = scripts.JobShape(
            job_name=name, comment=comment, wckey=wckey,
            partition=self.cfg.queue, account=self.cfg.account,
            walltime=self._scheduler_walltime(), cores=1, memory=None,
            log_directory=str(self.log_directory),
            worker_command=argv,
            extra_directives=list(self.cfg.job_extra_directives),
            prologue=[*self.cfg.job_script_prologue,
                      scripts.host_line(self.cfg.interface)],
            env=self._job_env(),
            python=self._python(self.cfg.default_container()),
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
            self._save_script(path, self._scheduler_script(ctx.lineage, ctx.idempotency_key))
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

    def _python(self, container: Any = None) -> str:
        if self.cfg.python:
            return self.cfg.python
        return containers.python_for(container, sys.executable)

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
            python=self._python(g.container),
        )
        iface = self.cfg.interface
        if iface and interface_address(iface):
            argv += ["--interface", iface]
        return self.in_container(g, argv)

    def in_container(self, g: GroupSpec, argv: list[str]) -> list[str]:
        """The worker command inside the group's container: the state folder (TLS,
        scheduler file, logs) is bound in place, and so is the job's local directory
        where the container has its own /tmp (apptainer binds the host's /tmp itself)."""
        c = g.container
        system = [str(self.workdir)]
        if c is not None and c.runtime not in containers.APPTAINER:
            system.append(scripts.LOCAL_DIR)
        return containers.wrap(c, argv, system=system, passthrough=sorted(self._job_env()),
                               gpus=g.gpus)

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
        arrays: dict[tuple[str, str], list[tuple[int, ResourceSpec, CreateContext]]] = {}
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
                if res.attributes.get("array"):
                    if found is not None:  # a retry: that task was submitted
                        results[i] = Created(id=found.id, meta={
                            "job_id": found.id, "job_name": found.name})
                    else:
                        shape_key = json.dumps(res.attributes, sort_keys=True, default=str)
                        arrays.setdefault((res.group or "default", shape_key), []).append(
                            (i, res, ctx))
                    continue
                path, meta = self._write_script(res, ctx)
                if found is not None:  # a retry: the first submission went through
                    results[i] = Created(id=found.id, meta={**meta, "job_id": found.id})
                else:
                    todo.append((i, path, meta))
            except ProviderError as exc:
                results[i] = exc
        if arrays:
            self._submit_arrays(arrays, results)
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
                task = scripts.task_identity(fields, job.array_task)
                out[task[1] if task else fields["key"]] = job
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
        self._save_script(path, text)
        return path, meta

    def _save_script(self, path: Path, text: str) -> None:
        """Write a job script (private: its export lines carry env: values) and the log
        folder its ``#SBATCH -o/-e`` name: Slurm fails a job whose log folder is missing
        (JobLaunchFailure)."""
        write_private(path, text)
        self.log_directory.mkdir(parents=True, exist_ok=True)

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
            idle_timeout=self.target.idle_timeout, roster=self._roster_path(),
        )
        outputs.update(more)
        if any(r.type == JOB for r in self.desired(ctx.spec)):
            self._unconfirmed = started
        else:
            started.confirm()
        ref = started.ref
        return Created(id=ref.id, meta=self._sched_meta(ref, log, outputs), outputs=outputs)

    def _roster_path(self) -> Path:
        return self.workdir / "roster.json"

    def roster_file(self) -> Path | None:
        # A scheduler process started by apply writes it (on the login node, or on
        # another behind the same alias: the work directory is shared); a scheduler job
        # does not.
        sched = next((r for r in self.desired() if r.is_scheduler), None)
        return self._roster_path() if sched is not None and sched.type == PROCESS else None

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
        security = tls.client_security() if self.target.tls else None
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
    def prepare_delete(self, records: Sequence[ResourceRecord], *,
                       scheduler: ResourceRecord | None = None) -> None:
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
