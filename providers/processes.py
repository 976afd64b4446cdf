"""Detached processes we own, identified by PID plus start time (never by name).

Each is started in its own session (so it outlives the CLI and forms one process group)
and tagged through its environment (SCALABLE_LINEAGE, SCALABLE_ADDRESS, SCALABLE_KEY),
which is how ``discover`` finds one an interrupted apply never recorded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scalable.providers.base import Discovered, Observation

TAG_LINEAGE = "SCALABLE_LINEAGE"
TAG_ADDRESS = "SCALABLE_ADDRESS"
TAG_KEY = "SCALABLE_KEY"
TAG_STATE_DIR = "SCALABLE_STATE_DIR"  # the .scalable/<target> dir that started it


def _stat(pid: int) -> list[str] | None:
    """Fields 3… of /proc/PID/stat (state first), or None if there is no such process."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    try:
        raw = os.read(fd, 4096).decode(errors="replace")
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _state(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[0] if fields else None


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    start: int

    @property
    def id(self) -> str:
        return f"pid:{self.pid}@{self.start}"

    def alive(self) -> bool:
        fields = _stat(self.pid)
        return fields is not None and fields[0] != "Z" and int(fields[19]) == self.start

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
    start = None
    for _ in range(100):
        start = start_time(proc.pid)
        if start is not None:
            break
        time.sleep(0.01)
    # Reap it in the background if it exits while we still run (no zombies in tests).
    _children.append(proc)
    return ProcessRef(proc.pid, start or 0)


_children: list[subprocess.Popen[bytes]] = []


def reap() -> None:
    for p in list(_children):
        if p.poll() is not None:
            _children.remove(p)


def _group_members(pgid: int) -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            yield int(entry.name)


def terminate(ref: ProcessRef, grace: float = 10.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL what is left.

    The group is only signalled if its leader is still the process we started, or the
    leader is gone (a group id cannot be reused while any member lives).
    """
    if not ref.alive() and start_time(ref.pid) is not None:
        return  # the PID now belongs to someone else: never signal it
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(ref.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reap()
            if not any(True for _ in _group_members(ref.pid)):
                return
            time.sleep(0.05)
    reap()


def tagged(lineage: str) -> Iterator[tuple[ProcessRef, dict[str, str]]]:
    """Every live process-group leader whose environment carries this lineage."""
    needle = f"{TAG_LINEAGE}={lineage}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if needle not in raw:
            continue
        try:
            if os.getpgid(pid) != pid or _state(pid) in (None, "Z"):
                continue
        except ProcessLookupError:
            continue
        tags = {}
        for item in raw.split(b"\0"):
            k, _, v = item.decode(errors="replace").partition("=")
            if k in (TAG_LINEAGE, TAG_ADDRESS, TAG_KEY, TAG_STATE_DIR):
                tags[k] = v
        st = start_time(pid)
        if st is not None:
            yield ProcessRef(pid, st), tags


# -- what providers do with the processes they recorded (local, and Slurm's scheduler) --


def observe_process(meta: Mapping[str, object]) -> Observation:
    """alive / gone for a process recorded by its pid and start time."""
    from scalable.providers.base import Observation

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


def _started_at(ticks: int) -> str | None:
    """A start time in clock ticks since boot as an ISO time (sweep shows ages)."""
    from datetime import UTC, datetime

    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    started = time.time() - (uptime - ticks / hz)
    return datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds")


def discover_processes(lineage: str, type: str) -> list[Discovered]:
    """Every live process group leader tagged with ``lineage`` ("": any), as Discovered."""
    from scalable.providers.base import Discovered

    return [
        Discovered(address=tags.get(TAG_ADDRESS, "?"), type=type, id=ref.id,
                   idempotency_key=tags.get(TAG_KEY, ""), meta=ref.meta(),
                   lineage=tags.get(TAG_LINEAGE, ""), home=tags.get(TAG_STATE_DIR, ""),
                   created_at=_started_at(ref.start))
        for ref, tags in tagged(lineage)
    ]


def stop_recorded(meta: Mapping[str, object], id: str | None, grace: float = 10.0) -> None:
    """Terminate a recorded process (from its meta, or its ``pid:N@START`` id)."""
    ref = ProcessRef.from_meta(meta)
    if ref is None and id and id.startswith("pid:"):
        pid, _, start = id[4:].partition("@")
        ref = ProcessRef(int(pid), int(start))
    if ref is not None:
        terminate(ref, grace=grace)
