"""Detached processes we own, identified by PID plus start time (never by name).

Each is started in its own session (so it outlives the CLI and forms one process group)
and tagged through its environment (SCALABLE_LINEAGE, SCALABLE_ADDRESS, SCALABLE_KEY),
which is how ``discover`` finds one an interrupted apply never recorded.

Process facts come from psutil (one library for Linux, macOS and the BSDs), except on
Linux, where what every command asks (start time, zombie, process group, environment)
is read by ``procfs`` without psutil's import cost. A start time is kept in milliseconds
since the epoch; records written by older versions hold clock ticks since boot (small
numbers), and are still recognised (see ``_same_start``).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from scalable.providers import procfs
from scalable.providers.base import Discovered, Observation
from scalable.providers.procfs import CLOCK_TICKS, Stat

if TYPE_CHECKING:
    import subprocess

TAG_LINEAGE = "SCALABLE_LINEAGE"
TAG_ADDRESS = "SCALABLE_ADDRESS"
TAG_KEY = "SCALABLE_KEY"
TAG_STATE_DIR = "SCALABLE_STATE_DIR"  # the .scalable/<target> dir that started it

# Start times below this are clock ticks since boot (records written before psutil).
_LEGACY_TICKS = 10**10


def _psutil() -> ModuleType:
    import psutil  # on platforms without procfs only: see the module's docstring

    return psutil


def _stat(pid: int) -> Stat | None:
    """Start time, state and group of ``pid``, or None if there is no such process."""
    if procfs.AVAILABLE:
        return procfs.stat(pid)
    psutil = _psutil()
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            state = "Z" if proc.status() == psutil.STATUS_ZOMBIE else "R"
            start = round(proc.create_time() * 1000)
        return Stat(state, os.getpgid(pid), start)
    except (psutil.Error, ValueError, OSError):
        return None


def _boot_time() -> float:
    return procfs.boot_time() if procfs.AVAILABLE else float(_psutil().boot_time())


def start_time(pid: int) -> int | None:
    """The process's start time in ms since the epoch, or None if there is none."""
    found = _stat(pid)
    return found.start_ms if found is not None else None


def _same_start(found: Stat, recorded: int) -> bool:
    now = found.start_ms
    if recorded < _LEGACY_TICKS:  # clock ticks since boot, from an older record
        ticks = round((now / 1000 - _boot_time()) * CLOCK_TICKS)
        return abs(ticks - recorded) <= 1
    # Both sides come from the same computation; allow for float rounding only.
    return abs(now - recorded) <= 1


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    start: int

    @property
    def id(self) -> str:
        return f"pid:{self.pid}@{self.start}"

    def _ours(self) -> Stat | None:
        """The process behind this ref if it is still the one we started (maybe a zombie)."""
        found = _stat(self.pid)
        return found if found is not None and _same_start(found, self.start) else None

    def alive(self) -> bool:
        found = self._ours()
        return found is not None and not found.zombie

    def group_alive(self) -> bool:
        return any(True for _ in _group_members(self.pid))

    @classmethod
    def from_meta(cls, meta: Mapping[str, object]) -> ProcessRef | None:
        pid, start = meta.get("pid"), meta.get("start_time")
        if isinstance(pid, int) and isinstance(start, int):
            return cls(pid, start)
        return None

    def meta(self) -> dict[str, object]:
        return {"pid": self.pid, "start_time": self.start}


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    tags: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessRef:
    import subprocess  # starting is apply's; `plan` and `destroy` only look and signal

    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {}), **tags}
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,  # own session and group: survives the CLI
            close_fds=True,
        )
    # Our own child cannot be reaped before we wait for it, so its start time is there.
    start = start_time(proc.pid)
    if start is None:
        raise OSError(f"process {proc.pid} vanished before it could be identified")
    # Reap it in the background if it exits while we still run (no zombies in tests).
    _children.append(proc)
    return ProcessRef(proc.pid, start)


_children: list[subprocess.Popen[bytes]] = []


def reap() -> None:
    for p in list(_children):
        if p.poll() is not None:
            _children.remove(p)


def _group_members(pgid: int) -> Iterator[int]:
    """Live (non-zombie) processes of the process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return  # nobody left in the group, zombies included: no need to list them all
    except PermissionError:
        pass
    if procfs.AVAILABLE:
        for pid in procfs.pids():
            found = procfs.stat(pid)
            if found is not None and found.pgrp == pgid and not found.zombie:
                yield pid
        return
    psutil = _psutil()
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                yield proc.pid
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue


def _wait_exit(pid: int, timeout: float) -> None:
    """Sleep up to ``timeout``, waking as soon as ``pid`` exits (a pidfd, Linux 5.3+):
    a poll would notice a closed worker up to one interval late."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, an old kernel, or already gone
        time.sleep(timeout)
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def _may_signal(ref: ProcessRef) -> bool:
    """Its group is ours to signal: the leader is still the process we started (even as
    a zombie whose children live on), or the leader is gone (a group id cannot be
    reused while any member lives)."""
    return _stat(ref.pid) is None or ref._ours() is not None


def _ask(ref: ProcessRef) -> None:
    """SIGTERM the group's leader, or the group when the leader is gone.

    Only the leader: a ``dask worker`` leader is a nanny whose worker is its child in
    the same group. Signalled itself, that child dies on the spot and the scheduler
    sees a dropped connection (telemetry: ``lost``); the nanny instead closes it
    gracefully (``closing-worker``: ``retired``) and exits once it has gone.
    """
    leader = ref._ours()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if leader is not None and not leader.zombie:
            os.kill(ref.pid, signal.SIGTERM)
        else:  # orphans of a leader that died: nobody else will close them
            os.killpg(ref.pid, signal.SIGTERM)


def ask_to_stop(ref: ProcessRef) -> None:
    """Ask the process (group) to stop now, without waiting (``terminate`` waits later)."""
    if _may_signal(ref):
        _ask(ref)


def terminate(ref: ProcessRef, grace: float = 10.0, *, asked: bool = False) -> None:
    """SIGTERM the process group's leader, wait, then SIGKILL what is left of the group.

    ``asked``: the SIGTERM was already sent (``ask_to_stop``); only wait. Sending it
    twice would cut Dask's graceful close short. See ``_may_signal`` for when a group
    is signalled at all, and ``_ask`` for why the leader alone gets the SIGTERM.
    """
    if not _may_signal(ref):
        return  # the PID now belongs to someone else: never signal it
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            if sig == signal.SIGKILL:
                os.killpg(ref.pid, sig)
            elif not asked:
                _ask(ref)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        delay = 0.005
        orphans_asked = sig == signal.SIGKILL
        while time.monotonic() < deadline:
            reap()
            if ref.alive():  # a living leader is a member: no need to list the group
                _wait_exit(ref.pid, delay)
            elif not any(True for _ in _group_members(ref.pid)):
                return
            else:
                if not orphans_asked:
                    # The leader went and left its group behind (bwrap does not pass the
                    # SIGTERM on to the sandbox): ask the rest now, not after the grace.
                    orphans_asked = True
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(ref.pid, signal.SIGTERM)
                time.sleep(delay)
            delay = min(delay * 2, 0.05)
    reap()


def _environments() -> Iterator[tuple[int, dict[str, str]]]:
    """(pid, environment) of every process whose environment we may read."""
    if procfs.AVAILABLE:
        for pid in procfs.pids():
            env = procfs.environ(pid)  # another user's: unreadable, so skipped
            if env:
                yield pid, env
        return
    psutil = _psutil()
    me = os.getuid() if hasattr(os, "getuid") else None
    for proc in psutil.process_iter(["uids"] if me is not None else []):
        try:
            uids = proc.info.get("uids")
            if me is not None and uids is not None and uids.real != me and me != 0:
                continue  # another user's process: its environment is not ours to read
            yield proc.pid, proc.environ()
        except (psutil.Error, OSError):
            continue


def tagged(lineage: str) -> Iterator[tuple[ProcessRef, dict[str, str]]]:
    """Every live process-group leader whose environment carries this lineage ("": any)."""
    for pid, env in _environments():
        if env.get(TAG_LINEAGE) != lineage and not (lineage == "" and env.get(TAG_LINEAGE)):
            continue
        try:
            if os.getpgid(pid) != pid:
                continue
        except (ProcessLookupError, PermissionError):
            continue
        found = _stat(pid)
        if found is not None and not found.zombie:
            keys = (TAG_LINEAGE, TAG_ADDRESS, TAG_KEY, TAG_STATE_DIR)
            tags = {k: env[k] for k in keys if k in env}
            yield ProcessRef(pid, found.start_ms), tags


# -- what providers do with the processes they recorded (local, and Slurm's scheduler) --


def observe_process(meta: Mapping[str, object]) -> Observation:
    """alive / gone for a process recorded by its pid and start time."""
    ref = ProcessRef.from_meta(meta)
    if ref is None:
        return Observation("gone", "never started")
    if ref.alive():
        return Observation("alive", details={"pid": ref.pid})
    tail = _last_line(meta.get("log"))
    return Observation("gone", f"process {ref.pid} exited" + (f" ({tail})" if tail else ""))


def _last_line(path: object, limit: int = 160) -> str:
    """The last non-empty line of a log, for a reason a person can act on."""
    if not isinstance(path, str):
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return lines[-1][:limit] if lines else ""


def _started_at(start_ms: int) -> str | None:
    """A process's start (epoch milliseconds, as tagged() gives it) as an ISO time."""
    from datetime import UTC, datetime

    if start_ms < _LEGACY_TICKS:
        return None
    return datetime.fromtimestamp(start_ms / 1000, UTC).isoformat(timespec="seconds")


def discover_processes(lineage: str, type: str) -> list[Discovered]:
    """Every live process group leader tagged with ``lineage`` ("": any), as Discovered."""
    return [
        Discovered(address=tags.get(TAG_ADDRESS, "?"), type=type, id=ref.id,
                   idempotency_key=tags.get(TAG_KEY, ""), meta=ref.meta(),
                   lineage=tags.get(TAG_LINEAGE, ""), home=tags.get(TAG_STATE_DIR, ""),
                   created_at=_started_at(ref.start))
        for ref, tags in tagged(lineage)
    ]


def recorded_ref(meta: Mapping[str, object], id: str | None) -> ProcessRef | None:
    """The process of a record (from its meta, or its ``pid:N@START`` id)."""
    ref = ProcessRef.from_meta(meta)
    if ref is None and id and id.startswith("pid:"):
        pid, _, start = id[4:].partition("@")
        ref = ProcessRef(int(pid), int(start))
    return ref


def stop_recorded(meta: Mapping[str, object], id: str | None, grace: float = 10.0,
                  *, asked: bool = False) -> None:
    """Terminate a recorded process (from its meta, or its ``pid:N@START`` id)."""
    ref = recorded_ref(meta, id)
    if ref is not None:
        terminate(ref, grace=grace, asked=asked)
