"""Interruptions handled: a nanny preload that retires its worker gracefully on notice.

Loaded on every worker scalable starts in the cloud as ``--preload-nanny`` (by module
name where scalable is installed, else as this file shipped next to the worker: it
imports only the standard library and ``distributed``, so a stock ``ghcr.io/dask/dask``
image can run it). Two kinds of notice take the same path:

- **EC2 spot interruption**: with ``SCALABLE_PREEMPTION_WATCH=ec2`` the nanny polls the
  instance metadata's ``spot/instance-action`` with the IMDSv2 token flow (``PUT
  /latest/api/token``, then ``GET`` with ``X-aws-ec2-metadata-token``). A notice gives
  about two minutes.
- **a platform stop** (Fargate stopping the task, GKE draining a spot node, ``docker
  stop``): the container's first process gets SIGTERM and closes its nannies; before a
  nanny stops its worker, it asks the scheduler to retire it. The grace period is the
  platform's (``SCALABLE_TERMINATION_GRACE`` seconds, when the provider knows it).

*Retire* means the scheduler's ``retire_workers``: the worker's results are copied to
other workers first, so the client's futures still resolve. Then a ``worker_preempted``
message (topic :data:`PREEMPTION_TOPIC`) goes to the scheduler's event log, where the
telemetry plugin records it and the adaptive controller reads it to ask for a
replacement at once.

The reason recorded for a platform stop names the platform when the provider says which
it is (``SCALABLE_PLATFORM=fargate`` → ``fargate-sigterm``, ``gke`` → ``gke-sigterm``),
else it is ``sigterm``.

Environment: ``SCALABLE_IMDS_URL`` (default ``http://169.254.169.254``; the tests point
it at an emulator), ``SCALABLE_IMDS_POLL`` (seconds between polls, default 5),
``SCALABLE_RETIRE_TIMEOUT`` (seconds a retire may take, default 90 on a spot notice).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

logger = logging.getLogger("scalable.preemption")

PREEMPTION_TOPIC = "scalable-preemption"
DEFAULT_IMDS_URL = "http://169.254.169.254"
TOKEN_TTL = 21600
SPOT_INTERRUPTION = "spot-interruption"
PLATFORM_STOP = "sigterm"
# Platforms whose stop notice is a SIGTERM, as SCALABLE_PLATFORM names them.
PLATFORMS = ("fargate", "gke", "docker")


def source() -> str:
    """This module's text: shipped to images without scalable (an EC2/Fargate file, a GKE
    ``--preload-nanny`` argument, which Dask runs as a script when it holds a space)."""
    from pathlib import Path

    return Path(__file__).read_text()


def platform_stop_reason(platform: str | None) -> str:
    """``fargate-sigterm`` for ``fargate``…; plain ``sigterm`` for anything unknown."""
    p = (platform or "").strip().lower()
    return f"{p}-{PLATFORM_STOP}" if p in PLATFORMS else PLATFORM_STOP


class Imds:
    """The EC2 instance metadata service, IMDSv2 only (scalable's instances require it)."""

    def __init__(self, base_url: str, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._token: str | None = None
        self._token_expires = 0.0

    def _fetch_token(self) -> str:
        req = urllib.request.Request(
            self.base_url + "/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)},
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            token = resp.read().decode().strip()
        self._token, self._token_expires = token, time.monotonic() + TOKEN_TTL - 60
        return token

    def spot_instance_action(self) -> dict[str, Any] | None:
        """The pending interruption (``{"action": ..., "time": ...}``), or None."""
        for attempt in (0, 1):
            token = self._token
            if token is None or time.monotonic() >= self._token_expires:
                token = self._fetch_token()
            req = urllib.request.Request(
                self.base_url + "/latest/meta-data/spot/instance-action",
                headers={"X-aws-ec2-metadata-token": token},
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    data = json.loads(resp.read().decode() or "{}")
                    return data if isinstance(data, dict) else {"action": str(data)}
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None  # no interruption scheduled
                if exc.code == 401 and attempt == 0:
                    self._token = None  # expired token: fetch a new one once
                    continue
                raise
        return None


def notice_seconds(when: str | None, now: float | None = None) -> float | None:
    """Seconds from now until an ISO-8601 ``time`` (``2026-12-01T16:02:00Z``)."""
    if not when:
        return None
    try:
        at = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return round(max(0.0, at - (time.time() if now is None else now)), 1)


class PreemptionGuard:
    """Owns one nanny (or nanny-less worker): watches for notices, retires on the first."""

    def __init__(self, server: Any, env: dict[str, str] | None = None) -> None:
        e = dict(os.environ if env is None else env)
        self.server = server
        self.watch = (e.get("SCALABLE_PREEMPTION_WATCH") or "").strip().lower()
        self.imds = Imds(e.get("SCALABLE_IMDS_URL") or DEFAULT_IMDS_URL)
        self.poll = float(e.get("SCALABLE_IMDS_POLL") or 5.0)
        self.retire_timeout = float(e.get("SCALABLE_RETIRE_TIMEOUT") or 90.0)
        grace = e.get("SCALABLE_TERMINATION_GRACE")
        self.grace = float(grace) if grace else None
        self.stop_reason = platform_stop_reason(e.get("SCALABLE_PLATFORM"))
        self.retired = False
        self._task: asyncio.Task[None] | None = None
        self.errors = 0

    # -- where the worker is -------------------------------------------------------------
    @property
    def worker_address(self) -> str | None:
        addr = getattr(self.server, "worker_address", None)  # a Nanny
        if addr is None and not hasattr(self.server, "worker_address"):
            addr = getattr(self.server, "address", None)  # a Worker without a nanny
        return addr

    @property
    def name(self) -> str:
        return str(getattr(self.server, "name", None) or self.worker_address or "?")

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self.watch == "ec2":
            self._task = asyncio.get_running_loop().create_task(self._watch_imds())

    async def stop(self, closing: bool = True) -> None:
        """Nanny teardown: runs before the nanny stops its worker process."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if closing and not self.retired:
            # Nobody retired this worker, yet its nanny is closing: the platform stopped
            # the container (SIGTERM). Move the data off while the worker still runs.
            await self.retire(
                self.stop_reason,
                self.grace,
                detail={},
                close=False,
                timeout=min(self.retire_timeout, self.grace or 25.0),
            )

    async def _watch_imds(self) -> None:
        while not self.retired:
            try:
                notice = await asyncio.to_thread(self.imds.spot_instance_action)
            except Exception as exc:  # an IMDS hiccup must not kill the worker
                self.errors += 1
                if self.errors in (1, 10, 100):
                    logger.warning("preemption: cannot read instance metadata: %s", exc)
                notice = None
            if notice:
                seconds = notice_seconds(notice.get("time"))
                logger.warning(
                    "preemption: spot interruption notice (%s at %s)",
                    notice.get("action"),
                    notice.get("time"),
                )
                await self.retire(
                    SPOT_INTERRUPTION,
                    seconds,
                    detail=notice,
                    close=True,
                    timeout=min(self.retire_timeout, seconds or 110.0),
                )
                return
            await asyncio.sleep(self.poll)

    async def retire(
        self,
        reason: str,
        seconds: float | None,
        *,
        detail: dict[str, Any],
        close: bool,
        timeout: float,
    ) -> bool:
        """Ask the scheduler to retire this worker (data moved first); then say why."""
        addr = self.worker_address
        if self.retired or not addr:
            return False
        self.retired = True
        scheduler = self.server.scheduler
        started = time.time()
        moved = False
        try:
            done = await asyncio.wait_for(
                scheduler.retire_workers(
                    workers=[addr],
                    close_workers=close,
                    remove=True,
                    stimulus_id=f"scalable-preempted-{started}",
                ),
                timeout=max(1.0, timeout),
            )
            moved = addr in (done or {})
        except Exception as exc:  # the scheduler may be gone too: nothing left to save
            logger.warning("preemption: retiring %s failed: %s", addr, exc)
        if not moved and reason.endswith(PLATFORM_STOP):
            # The scheduler no longer knew the worker: it was retired already (scale-down,
            # destroy) or the scheduler is gone. Not a preemption.
            return False
        msg = {
            "action": "worker-preempted",
            "worker": addr,
            "name": self.name,
            "reason": reason,
            "notice_seconds": seconds,
            "retired": moved,
            "retire_seconds": round(time.time() - started, 2),
            "instance_action": detail.get("action"),
            "at": detail.get("time"),
        }
        try:
            await asyncio.wait_for(scheduler.log_event(topic=PREEMPTION_TOPIC, msg=msg), 5.0)
        except Exception as exc:
            logger.warning("preemption: cannot tell the scheduler: %s", exc)
        logger.warning(
            "preemption: %s retired (%s, %s s of notice, data moved: %s)",
            addr,
            reason,
            seconds,
            moved,
        )
        return moved


_GUARDS: dict[int, PreemptionGuard] = {}


async def dask_setup(server: Any) -> None:
    """Preload entry point (``--preload-nanny``, or ``--preload`` on a nanny-less worker)."""
    guard = PreemptionGuard(server)
    _GUARDS[id(server)] = guard
    guard.start()


async def dask_teardown(server: Any) -> None:
    guard = _GUARDS.pop(id(server), None)
    if guard is not None:
        await guard.stop(closing=True)
