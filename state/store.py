"""Where state lives: a local folder per target (default) or a remote backend.

Local writes are atomic: temp file in the same folder, fsync, rename, fsync the
folder; the previous version is kept as ``state.json.backup``; mode 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Protocol

from scalable._version import __version__
from scalable.errors import StateError
from scalable.state.lock import LockInfo, file_lock, force_unlock
from scalable.state.model import StateFile


class StateStore(Protocol):
    """What the engine needs of a backend."""

    location: str

    def read(self) -> StateFile | None: ...

    def write(self, state: StateFile) -> bool:
        """Persist ``state``; bump the serial only if the content changed. True if written."""
        ...

    def lock(
        self, operation: str, timeout: float = 0.0, notify: Callable[[str], None] | None = None
    ) -> AbstractContextManager[LockInfo]: ...

    def force_unlock(self, lock_id: str) -> LockInfo: ...


def _version() -> str:
    return __version__


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class LocalStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "state.json"
        self.backup = folder / "state.json.backup"
        self.lock_path = folder / "state.lock"
        self.location = str(self.path)

    def read(self) -> StateFile | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateError(
                f"{self.path}: not valid JSON ({exc})",
                hint=f"the previous version is in {self.backup}",
            ) from None
        return StateFile.from_dict(data, source=str(self.path))

    def write(self, state: StateFile) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        previous = self.read()
        if previous is not None and previous.content() == state.content():
            state.serial = previous.serial
            return False
        state.serial = (previous.serial if previous else state.serial) + 1
        state.scalable_version = _version()
        body = json.dumps(state.to_dict(), indent=2, sort_keys=False).encode() + b"\n"
        if self.path.exists():
            atomic_write(self.backup, self.path.read_bytes())
        atomic_write(self.path, body)
        return True

    def lock(
        self, operation: str, timeout: float = 0.0, notify: Callable[[str], None] | None = None
    ) -> AbstractContextManager[LockInfo]:
        return file_lock(self.lock_path, operation, timeout=timeout, notify=notify)

    def force_unlock(self, lock_id: str) -> LockInfo:
        return force_unlock(self.lock_path, lock_id)

    def iter_backups(self) -> Iterator[Path]:
        if self.backup.exists():
            yield self.backup
