"""Where state lives: a local folder per target (default) or a remote backend.

Local writes are atomic: temp file in the same folder, fsync, rename, fsync the
folder; the previous version is kept as ``state.json.backup``; mode 0600. As in the
remote backends, a write under the lock succeeds only on the bytes this store last read
or wrote under that lock, and never over a state of another lineage.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
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

    def write(self, state: StateFile, *, replace: bool = False) -> bool:
        """Persist ``state``; bump the serial only if the content changed. True if written.

        ``replace``: an import (``state push``, ``state migrate``) whose lineage and serial
        the caller has checked: another lineage may replace this one, and a higher
        incoming serial is kept.
        """
        ...

    def lock(
        self, operation: str, timeout: float = 0.0, notify: Callable[[str], None] | None = None
    ) -> AbstractContextManager[LockInfo]: ...

    def force_unlock(self, lock_id: str) -> LockInfo: ...

    def read_backup(self) -> StateFile | None:
        """The version before the last write (None if there is none)."""
        ...


def _version() -> str:
    return __version__


def decode_state(raw: bytes, source: str, hint: str | None) -> StateFile:
    """Bytes of a state file as a StateFile, or one StateError naming ``source``."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise StateError(f"{source}: not valid JSON ({str(exc)[:120]})", hint=hint) from None
    return StateFile.from_dict(data, source=source)


def encode_for_write(
    previous: StateFile | None, state: StateFile, location: str, *, replace: bool = False
) -> bytes | None:
    """The bytes to write for ``state`` over ``previous``; None when nothing changed.

    Sets ``state.serial`` (bumped only when the content changed) and refuses a state of
    another lineage (Terraform's rule: unrelated states never replace each other) unless
    ``replace`` (an import the caller checked, which also keeps a higher serial).
    """
    if replace:
        if previous is not None and previous.content() == state.content():
            state.serial = previous.serial
            return None
        floor = previous.serial + 1 if previous is not None else 1
        state.serial = max(state.serial, floor)
        state.scalable_version = _version()
        return json.dumps(state.to_dict(), indent=2, sort_keys=False).encode() + b"\n"
    if previous is not None:
        if previous.lineage != state.lineage:
            raise StateError(
                f"{location}: refusing to write state of lineage {state.lineage} over the "
                f"unrelated state of lineage {previous.lineage}",
                hint="this is another target's state; check the backend's bucket/key/prefix",
            )
        if previous.content() == state.content():
            state.serial = previous.serial
            return None
    state.serial = (previous.serial if previous else state.serial) + 1
    state.scalable_version = _version()
    return json.dumps(state.to_dict(), indent=2, sort_keys=False).encode() + b"\n"


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    import tempfile  # (and shutil, bz2, lzma): writers only; `plan` reads

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
        # Under the lock: the digest of the bytes last read or written (None: not yet).
        self._locked = False
        self._seen: str | None = None

    def _raw(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise StateError(f"{path}: is a directory, not a state file",
                             hint="move it away; scalable keeps the state in that file") from None
        except OSError as exc:
            raise StateError(f"{path}: cannot read the state ({exc.strerror})",
                             hint="check its permissions (it should be 0600, yours)") from None

    def _decode(self, raw: bytes) -> StateFile:
        return decode_state(raw, str(self.path), f"the previous version is in {self.backup}")

    def read(self) -> StateFile | None:
        raw = self._raw(self.path)
        if self._locked:
            self._seen = _digest(raw)
        return None if raw is None else self._decode(raw)

    def read_backup(self) -> StateFile | None:
        raw = self._raw(self.backup)
        return None if raw is None else decode_state(raw, str(self.backup), None)

    def write(self, state: StateFile, *, replace: bool = False) -> bool:
        if self.folder.exists() and not self.folder.is_dir():
            raise StateError(f"{self.folder}: is a file, not the state folder",
                             hint="move it away; scalable keeps the target's state there")
        from scalable.private_files import private_dir

        private_dir(self.folder)
        raw = self._raw(self.path)
        if self._locked and self._seen is not None and _digest(raw) != self._seen:
            raise StateError(
                f"{self.path} changed since this command last read it",
                hint="something wrote it without holding the lock; run the command again",
            )
        previous = None if raw is None else self._decode(raw)
        body = encode_for_write(previous, state, self.location, replace=replace)
        if body is None:
            return False
        if raw is not None:
            atomic_write(self.backup, raw)
        atomic_write(self.path, body)
        if self._locked:
            self._seen = _digest(body)
        return True

    @contextmanager
    def _hold(
        self, operation: str, timeout: float, notify: Callable[[str], None] | None
    ) -> Iterator[LockInfo]:
        with file_lock(self.lock_path, operation, timeout=timeout, notify=notify) as info:
            self._locked, self._seen = True, None
            try:
                yield info
            finally:
                self._locked, self._seen = False, None

    def lock(
        self, operation: str, timeout: float = 0.0, notify: Callable[[str], None] | None = None
    ) -> AbstractContextManager[LockInfo]:
        return self._hold(operation, timeout, notify)

    def force_unlock(self, lock_id: str) -> LockInfo:
        return force_unlock(self.lock_path, lock_id)

    def iter_backups(self) -> Iterator[Path]:
        if self.backup.exists():
            yield self.backup


def _digest(raw: bytes | None) -> str:
    return "" if raw is None else hashlib.sha256(raw).hexdigest()
