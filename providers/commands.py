"""Command lines for Dask schedulers and workers, shared by every provider.

Local processes, Slurm job scripts, EC2 user data, Fargate and Kubernetes containers all
start the same programs with the same flags; only the wrapping differs.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from scalable.errors import ScalableError
from scalable.manifest.schema import ENV_NAME_RE
from scalable.spec import GroupSpec

TELEMETRY_PRELOAD = "scalable.telemetry.plugin"

# How a nanny starts its worker: Dask spawns a fresh interpreter, which imports
# distributed all over again (~0.6 s of CPU per worker, the nanny having just done the
# same). Forking the nanny instead starts the worker with everything imported, and the
# two share those pages: on 2 cores, 4 local workers register in ~1.7 s instead of ~2.9 s.
# The nanny is kept (memory limit, restarts, ``Client.restart``). A manifest's ``env`` or
# the caller's environment setting this variable (to ``spawn``, say) wins.
WORKER_START_ENV = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"


def worker_start_env(env: Mapping[str, str]) -> dict[str, str]:
    """``{WORKER_START_ENV: "fork"}`` unless ``env`` or this process's environment set it."""
    if WORKER_START_ENV in env or WORKER_START_ENV in os.environ:
        return {}
    return {WORKER_START_ENV: "fork"}


QUICK_EXIT = "scalable.providers.quick_exit"


def python_m(python: str | None, module: str, *, quick_exit: bool = False) -> list[str]:
    """``python -m module``, or through :data:`QUICK_EXIT` (no interpreter teardown)."""
    exe = python or sys.executable
    return [exe, "-m", QUICK_EXIT, module] if quick_exit else [exe, "-m", module]


def scheduler_argv(
    *,
    host: str,
    scheduler_file: Path | None = None,
    port: int = 0,
    dashboard: bool = True,
    dashboard_port: int = 0,
    dashboard_host: str = "127.0.0.1",
    tls_args: Sequence[str] = (),
    idle_timeout: float | None = None,
    preload: Sequence[str] = (),
    python: str | None = None,
    quick_exit: bool = False,
) -> list[str]:
    """``dask scheduler``. ``quick_exit``: run through :mod:`scalable.providers.quick_exit`
    (only with this interpreter, which has scalable)."""
    argv = python_m(python, "distributed.cli.dask_scheduler", quick_exit=quick_exit)
    argv += ["--host", host, "--port", str(port)]
    if tls_args:
        argv += ["--protocol", "tls"]
    # The dashboard is plain HTTP without authentication: loopback unless a caller
    # puts it behind something else (a cloud security group, a Kubernetes port). Its
    # address is given even with --no-dashboard: the scheduler's HTTP server (health,
    # metrics) still starts, and would otherwise bind every interface on port 8787.
    argv += ["--dashboard-address", f"{dashboard_host}:{dashboard_port}"]
    if not dashboard:
        argv.append("--no-dashboard")
    if scheduler_file is not None:
        argv += ["--scheduler-file", str(scheduler_file)]
    argv += list(tls_args)
    if idle_timeout:
        argv += ["--idle-timeout", f"{int(idle_timeout)}s"]
    for p in preload:
        argv += ["--preload", p]
    return argv


def dask_image() -> str:
    """The default worker image: ``ghcr.io/dask/dask`` at this machine's distributed and
    Python versions, so cloud workers run the client's versions (scalable.versions)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        dask_version = version("distributed")
    except PackageNotFoundError:  # pragma: no cover - distributed is a dependency
        dask_version = "latest"
    return f"ghcr.io/dask/dask:{dask_version}-py{sys.version_info.major}.{sys.version_info.minor}"


def export_lines(env: Mapping[str, str]) -> list[str]:
    """``export NAME=<quoted value>`` lines (names are POSIX names, checked at load)."""
    for k in env:
        if not ENV_NAME_RE.fullmatch(k):  # a manifest is checked at load: a caller's bug
            raise ValueError(f"not an environment variable name: {k!r}")
    return [f"export {k}={shlex.quote(v)}" for k, v in env.items()]


GPU_RESOURCE = "GPU"


def resources_for(group: GroupSpec) -> dict[str, float]:
    """Dask resources a group's workers advertise: one unit per thread for each tag, and
    ``GPU=<gpus>`` on a GPU worker (so ``resources={"GPU": 1}`` never lands on a CPU one)."""
    res = {tag_resource(t): float(group.threads_per_worker) for t in group.tags}
    if group.gpus:
        res[GPU_RESOURCE] = float(group.gpus)
    return res


def tag_resource(tag: str) -> str:
    return f"tag-{tag}"


def worker_argv(
    group: GroupSpec,
    scheduler_address: str,
    *,
    name: str,
    nworkers: int = 1,
    nanny: bool = True,
    death_timeout: float = 60.0,
    lifetime: float | None = None,
    lifetime_stagger: float | None = None,
    tls_args: Sequence[str] = (),
    host: str | None = None,
    dashboard: bool | None = None,
    local_directory: str | None = None,
    python: str | None = None,
    module: str = "distributed.cli.dask_worker",
    quick_exit: bool = False,
) -> list[str]:
    """``dask worker`` (or a module taking its flags). ``dashboard``: None keeps Dask's
    default; False serves no dashboard pages; True serves them. A worker always runs an
    HTTP server (health, metrics): with ``host`` set it binds there, never every
    interface (``dask worker``'s default ``--dashboard-address :0``)."""
    argv = [*python_m(python, module, quick_exit=quick_exit), scheduler_address]
    argv += ["--name", name, "--nthreads", str(group.threads_per_worker)]
    argv += ["--nworkers", str(nworkers)]
    if group.memory_per_worker:
        argv += ["--memory-limit", str(group.memory_per_worker)]
    if not nanny:
        argv += ["--no-nanny"]
    extra, more = _split_resources(group.settings.worker_extra_args)
    res = resources_for(group)
    if res or more:
        # One --resources flag: dask worker keeps only the last one it is given, so a
        # worker_extra_args' own (``--resources GPU=1``) joins the tags' resources.
        argv += ["--resources", " ".join([*(f"{k}={v:g}" for k, v in res.items()), *more])]
    argv += ["--death-timeout", f"{int(death_timeout)}s"]
    if lifetime:
        argv += ["--lifetime", f"{int(lifetime)}s"]
        if lifetime_stagger:
            argv += ["--lifetime-stagger", f"{int(lifetime_stagger)}s"]
    argv += list(tls_args)
    if host:
        argv += ["--host", host]
    if host:
        argv += ["--dashboard-address", f"{host}:0"]
    if dashboard is not None:
        argv += ["--dashboard" if dashboard else "--no-dashboard"]
    if local_directory:
        argv += ["--local-directory", local_directory]
    argv += extra
    return argv


def _split_resources(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """``worker_extra_args`` without its ``--resources`` flags, and their values."""
    rest: list[str] = []
    found: list[str] = []
    it = iter(args)
    for a in it:
        if a == "--resources":
            found.append(next(it, ""))
        elif a.startswith("--resources="):
            found.append(a.split("=", 1)[1])
        else:
            rest.append(a)
    return rest, [f for f in found if f]


def worker_names(base: str, nworkers: int) -> tuple[str, ...]:
    """The names dask-worker gives: ``base`` alone, or ``base-0 … base-N-1``."""
    if nworkers == 1:
        return (base,)
    return tuple(f"{base}-{k}" for k in range(nworkers))


def allocation_worker_names(base: str, nodes: int, per_node: int) -> tuple[str, ...]:
    """The names of a multi-node allocation's workers: node ``n`` runs ``dask worker
    --name <base>-<n> --nworkers <per_node>``, so ``base-n`` (one per node) or
    ``base-n-k``."""
    return tuple(name for n in range(nodes) for name in worker_names(f"{base}-{n}", per_node))


def read_scheduler_file(
    path: Path, *, timeout: float, alive: object = None, log: Path | None = None
) -> Mapping[str, object]:
    """Wait for a scheduler to write its file; fail with the log's tail if it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = json.loads(path.read_text())
            if data.get("address"):
                return data
        except (FileNotFoundError, ValueError):
            pass
        if callable(alive) and not alive():
            break
        time.sleep(0.05)
    tail = ""
    if log is not None and log.exists():
        lines = log.read_text(errors="replace").strip().splitlines()
        tail = lines[-1] if lines else ""
    raise ScalableError(
        f"the Dask scheduler did not start: {tail or f'no scheduler file after {timeout:g}s'}",
        hint=f"see {log}" if log else None,
    )
