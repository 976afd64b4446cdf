"""A Dask scheduler run as a detached process on this host: one lifecycle for every
provider that starts one here (the local target, and Slurm's scheduler on the login node).

The port is chosen up front, so the scheduler's address is known the moment the process
is spawned: a provider can start its workers (or submit its jobs) while the scheduler is
still importing, and confirm it afterwards (``StartedScheduler.confirm``). Workers retry
their connection until their death timeout, so the order they come up in does not matter.

The port is picked free below the kernel's ephemeral range (so no outgoing connection
can take it meanwhile) and released just before the scheduler binds it; a program
asking for that very port in that window makes the scheduler exit, ``confirm`` then
reports it (with the log's last line), and the next apply starts it on a new port.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalable.outputs import DASHBOARD_URL, SCHEDULER_ADDRESS
from scalable.providers.base import ProviderError
from scalable.providers.commands import (
    TELEMETRY_PRELOAD,
    read_scheduler_file,
    scheduler_argv,
    worker_start_env,
)
from scalable.providers.processes import ProcessRef, spawn, terminate
from scalable.roster import PRELOAD as ROSTER_PRELOAD
from scalable.roster import ROSTER_ENV

# A scheduler preload (the module, imported by the scheduler only).
LATE_DASHBOARD = "scalable.providers.late_dashboard"

# The dashboard is plain HTTP with no login: it listens on the scheduler host's loopback
# only, whatever the scheduler binds; users reach it through an SSH tunnel.
DASHBOARD_HOST = "127.0.0.1"


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for automatic (bind 0 / outgoing) ports."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default; BSDs and macOS use 49152-65535


def free_port(host: str) -> int:
    """A port free on ``host`` now, for a server to bind a moment later.

    Chosen below the kernel's ephemeral range: a port from that range (what ``bind(0)``
    returns) can be taken in the meantime as the local end of any outgoing connection
    on a busy machine; one outside it only by a program asking for that very port.
    """
    import random  # only apply needs them; plan stays light
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low, _ = _ephemeral_range()
    candidates = random.sample(range(10000, low), 50) if low > 10050 else []
    for port in [*candidates, 0]:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host.strip("[]"), port))
            except OSError:
                continue
            chosen: int = s.getsockname()[1]
            return chosen
    raise OSError(f"no free port on {host}")


def preload() -> list[str]:
    """The telemetry scheduler plugin, when it is installed."""
    try:
        if importlib.util.find_spec(TELEMETRY_PRELOAD) is not None:
            return [TELEMETRY_PRELOAD]
    except ModuleNotFoundError:
        pass
    return []


def process_env(target: Any, provider: str, workdir: Path, *,
                fork_workers: bool = True) -> dict[str, str]:
    """What every process scalable starts for a target carries in its environment.

    ``fork_workers``: nannies fork their worker (``worker_start_env``); off where fork is
    unsafe (macOS system libraries).
    """
    return {
        **(worker_start_env(target.env) if fork_workers else {}),
        **target.env,
        "SCALABLE_TARGET": target.name,
        "SCALABLE_PROJECT": target.project,
        "SCALABLE_PROVIDER": provider,
        "SCALABLE_STATE_DIR": str(workdir),
    }


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def dashboard_url(host: str, port: object) -> str:
    return f"http://{url_host(host)}:{port}/status"


def outputs_from_file(info: Mapping[str, Any], *, dashboard: bool = True) -> dict[str, str]:
    """scheduler_address (and dashboard_url) from a scheduler file's content.

    ``dashboard``: whether the scheduler serves one; its HTTP server (listed as the
    "dashboard" service either way) answers health checks without it.
    """
    address = str(info["address"])
    outputs = {SCHEDULER_ADDRESS: address}
    services: Any = info.get("services") or {}
    if dashboard and "dashboard" in services:  # on the scheduler host's loopback (scheduler_argv)
        outputs[DASHBOARD_URL] = dashboard_url(DASHBOARD_HOST, services["dashboard"])
    return outputs


@dataclass(frozen=True)
class StartedScheduler:
    """A scheduler process spawned by this apply, not yet confirmed to listen."""

    ref: ProcessRef
    scheduler_file: Path
    log: Path
    address: str | None = None  # what it must listen on (None: whatever it reports)

    def confirm(self, timeout: float = 120.0) -> Mapping[str, Any]:
        """Wait for its scheduler file; stop the process and raise if it failed."""
        try:
            info = read_scheduler_file(
                self.scheduler_file, timeout=timeout, alive=self.ref.alive, log=self.log
            )
            if self.address is not None and info.get("address") != self.address:
                raise ProviderError(
                    f"the scheduler listens on {info.get('address')}, not {self.address}"
                )
        except Exception as exc:
            terminate(self.ref, grace=2)
            raise ProviderError(str(exc), hint=f"see {self.log}") from None
        return info


def start_scheduler(
    *,
    host: str,
    workdir: Path,
    tags: Mapping[str, str],
    env: Mapping[str, str],
    tls: bool,
    tls_args: Sequence[str] = (),
    dashboard: bool = True,
    idle_timeout: float | None = None,
    roster: Path | None = None,
) -> tuple[StartedScheduler, dict[str, str]]:
    """Spawn a scheduler on ports chosen now; return it and its outputs (known already).

    The dashboard (plain HTTP, no login) listens on loopback whatever ``host`` is: users
    of a scheduler on a login node reach it through an SSH tunnel. ``idle_timeout`` is
    the leak guard: the scheduler exits after that long without work. ``roster``: a
    file the scheduler keeps listing its workers in (:mod:`scalable.roster`).
    """
    sched_file = workdir / "scheduler.json"
    log = workdir / "logs" / "scheduler.log"
    port = free_port(host)
    dash = free_port(DASHBOARD_HOST)  # the HTTP server (health) listens without it too
    sched_file.unlink(missing_ok=True)
    extra_env: dict[str, str] = {}
    if roster is not None:
        roster.unlink(missing_ok=True)  # a dead scheduler's list must not be read as this one's
        extra_env[ROSTER_ENV] = str(roster)
    ref = spawn(
        scheduler_argv(
            host=host,
            port=port,
            # The dashboard is attached once the scheduler listens (late_dashboard).
            dashboard=False,
            dashboard_port=dash,
            scheduler_file=sched_file,
            dashboard_host=DASHBOARD_HOST,
            preload=[*preload(), *([ROSTER_PRELOAD] if roster is not None else []),
                     *([LATE_DASHBOARD] if dashboard else [])],
            tls_args=tls_args,
            idle_timeout=idle_timeout,
            quick_exit=True,  # this interpreter, which has scalable
        ),
        log=log,
        tags=tags,
        # The scheduler must not inherit a parent's scheduler address by accident.
        env={**env, **extra_env, "DASK_SCHEDULER_ADDRESS": ""},
        cwd=workdir,
    )
    address = f"{'tls' if tls else 'tcp'}://{url_host(host)}:{port}"
    outputs = {SCHEDULER_ADDRESS: address}
    if dashboard:
        outputs[DASHBOARD_URL] = dashboard_url(DASHBOARD_HOST, dash)
    return StartedScheduler(ref, sched_file, log, address), outputs
