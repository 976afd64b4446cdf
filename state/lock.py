"""The state lock: an fcntl lock (it dies with its process) plus holder info.

Contention waits up to a timeout with backoff, printing Terraform's "Acquiring state
lock" after 400 ms, then fails naming the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from scalable._version import __version__
from scalable.errors import StateError
from scalable.state.model import now_iso


@dataclass
class LockInfo:
    id: str
    operation: str
    who: str
    pid: int
    version: str
    created: str

    def describe(self) -> str:
        return (
            f"ID: {self.id}  Operation: {self.operation}  Who: {self.who}  "
            f"PID: {self.pid}  Created: {self.created}"
        )


def _version() -> str:
    return __version__


def _host() -> str:
    if hasattr(os, "uname"):
        return os.uname().nodename  # what socket.gethostname() answers, without its import
    import socket

    return socket.gethostname()


def new_lock_info(operation: str) -> LockInfo:
    import getpass  # its termios import is needed only here

    return LockInfo(
        id=str(uuid.uuid4()),
        operation=operation,
        who=f"{getpass.getuser()}@{_host()}",
        pid=os.getpid(),
        version=_version(),
        created=now_iso(),
    )


class LockTimeout(StateError):
    pass


def read_holder(path: Path) -> LockInfo | None:
    try:
        data = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return LockInfo(**data)
    except TypeError:
        return None


@contextmanager
def file_lock(
    path: Path,
    operation: str,
    timeout: float = 0.0,
    notify: Callable[[str], None] | None = None,
) -> Iterator[LockInfo]:
    """Hold ``path`` exclusively for the block; the info is written into the file."""
    from scalable.private_files import private_dir

    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    delay = 0.05
    told = False
    start = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and notify and time.monotonic() - start > 0.4:
                    notify("Acquiring state lock. This may take a few moments...")
                    told = True
                if time.monotonic() >= deadline:
                    holder = read_holder(path)
                    who = holder.describe() if holder else "unknown holder"
                    raise LockTimeout(
                        f"the state of this target is locked ({path}): {who}",
                        hint="wait for that command, retry with --lock-timeout 60s, "
                        "or `scalable state force-unlock ID` if its process is gone",
                    ) from None
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 1.0)
        info = new_lock_info(operation)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(info)).encode(), 0)
        os.fsync(fd)
        try:
            yield info
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock


def force_unlock(path: Path, lock_id: str) -> LockInfo:
    """Clear a lock's info. An fcntl lock cannot outlive its process, so a live holder
    is reported rather than broken."""
    holder = read_holder(path)
    if holder is None:
        raise StateError(f"no lock is held on {path}", hint="nothing to unlock")
    if holder.id != lock_id:
        raise StateError(
            f"lock ID {lock_id!r} does not match the current lock ({holder.id})",
            hint="copy the ID from the lock error message",
        )
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(
                f"the lock is still held by a live process (pid {holder.pid}, {holder.who})",
                hint=f"stop that process (kill {holder.pid}); its lock ends with it",
            ) from None
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    return holder
