"""A state backend on an object store (S3, GCS): one object for the state, one for the lock.

Every remote backend is this class over a small adapter (:class:`ObjectStore`) that
offers conditional reads and writes on a *version* (S3's ETag, GCS's generation), so
the guarantees are written once:

- **Whole-object writes**, conditional on the version this store last read or wrote
  (``If-Match`` / ``ifGenerationMatch``), or on there being no object yet. The previous
  version is written to ``<key>.backup`` first. The serial is bumped only when the
  content changes; a state of another lineage is never written over this one.
- **A lock object** ``<key>.lock`` created only if absent, carrying the holder (ID,
  operation, user@host, pid, created) and a lease. A background thread renews it (a
  write conditional on the lock's own version) every third of the lease. A lock whose
  lease ran out (its holder was killed or cut off) may be taken over, by a write
  conditional on the stale lock's version. Expiry is judged on the server's clock where
  the adapter knows it (S3: Last-Modified against the response's Date), otherwise by
  seeing the lock unchanged for a whole lease on the waiter's own monotonic clock; clock
  skew between runners never matters.
- **Fencing.** Under the lock, a write succeeds only on the version of this store's own
  last read or write (never on one it reads just before writing), and only while the
  lease is known to be held: if the renewer has not confirmed the lease within half of
  it (the process was paused, or the network cut), the write first renews it
  synchronously, and a renewal that finds the lock replaced, or that cannot reach the
  server before the lease ends, stops the command with :class:`LockLost` (exit 3) before
  anything else is changed. A holder paused *between* that check and its write can still
  land one write; the new holder's next write is then refused (its version no longer
  matches), so no writer ever silently overwrites another's state.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import asdict, dataclass
from typing import Protocol

from scalable.errors import StateError
from scalable.state.lock import LockInfo, LockTimeout, new_lock_info
from scalable.state.model import StateFile
from scalable.state.store import decode_state, encode_for_write

DEFAULT_LEASE = 60.0


def lease_seconds() -> float:
    """The lock lease; ``SCALABLE_STATE_LOCK_LEASE`` (or the older ``SCALABLE_S3_…``)."""
    raw = (
        os.environ.get("SCALABLE_STATE_LOCK_LEASE")
        or os.environ.get("SCALABLE_S3_LOCK_LEASE")
        or DEFAULT_LEASE
    )
    try:
        value = float(raw)
    except ValueError:
        raise StateError(
            f"SCALABLE_STATE_LOCK_LEASE={raw!r} is not a number of seconds",
            hint="e.g. SCALABLE_STATE_LOCK_LEASE=60",
        ) from None
    if not 0.5 <= value <= 3600:
        raise StateError(
            f"SCALABLE_STATE_LOCK_LEASE={raw!r} is out of range",
            hint="between 0.5 and 3600 seconds",
        )
    return value


class Conflict(Exception):
    """A conditional request lost: the object is not at the version we named."""


@dataclass
class Blob:
    body: bytes
    version: str
    # Seconds since the object was last written, on the server's clock (None: unknown).
    age: float | None = None


class ObjectStore(Protocol):
    """Conditional object access; every failure but :class:`Conflict` is a StateError."""

    def url(self, key: str) -> str: ...

    def get(self, key: str) -> Blob | None: ...

    def put(
        self, key: str, body: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        """Write ``body``; return the new version. Conflict if the condition fails."""
        ...

    def delete(self, key: str, *, if_version: str) -> None:
        """Delete at ``if_version`` (Conflict otherwise); a missing object is no error."""
        ...

    def permission_hint(self, key: str) -> str: ...


class LockLost(StateError):
    """The lease ended or the lock was taken: stop, keep what was done (exit 3)."""

    exit_code = 3


@dataclass
class _Held:
    info: LockInfo
    version: str  # the lock object's version as we last wrote it
    confirmed: float  # monotonic time at which the last successful renewal was sent
    lease: float
    lost: str = ""
    state_version: str | None = None  # the state object's version we last read/wrote
    seen: bool = False  # read or written the state under this lock


class RemoteStore:
    """State in one object of an :class:`ObjectStore`, locked by a second one."""

    def __init__(self, objects: ObjectStore, key: str) -> None:
        self.objects = objects
        self.key = key
        self.lock_key = f"{key}.lock"
        self.backup_key = f"{key}.backup"
        self.location = objects.url(key)
        self._held: _Held | None = None
        self._guard = threading.Lock()

    # -- state ----------------------------------------------------------------------------
    def _get(self) -> tuple[StateFile | None, str | None]:
        blob = self.objects.get(self.key)
        if blob is None:
            return None, None
        hint = f"the previous version is in {self.objects.url(self.backup_key)}"
        return decode_state(blob.body, self.location, hint), blob.version

    def read(self) -> StateFile | None:
        state, version = self._get()
        held = self._held
        if held is not None and not held.lost:
            held.state_version, held.seen = version, True
        return state

    def read_backup(self) -> StateFile | None:
        blob = self.objects.get(self.backup_key)
        if blob is None:
            return None
        return decode_state(blob.body, self.objects.url(self.backup_key), None)

    def write(self, state: StateFile, *, replace: bool = False) -> bool:
        held = self._fence()
        previous_blob = self.objects.get(self.key)
        version = previous_blob.version if previous_blob else None
        if held is not None and held.seen and version != held.state_version:
            held.lost = "the state changed since this command last read or wrote it"
            raise self._lost(held)
        previous = None
        if previous_blob is not None:
            hint = f"the previous version is in {self.objects.url(self.backup_key)}"
            previous = decode_state(previous_blob.body, self.location, hint)
        body = encode_for_write(previous, state, self.location, replace=replace)
        if body is None:
            if held is not None:
                held.state_version, held.seen = version, True
            return False
        if previous_blob is not None:
            self.objects.put(self.backup_key, previous_blob.body)
        try:
            if version is None:
                new = self.objects.put(self.key, body, if_absent=True)
            else:
                new = self.objects.put(self.key, body, if_version=version)
        except Conflict:
            if held is not None:
                held.lost = "another writer changed the state while this command wrote it"
                raise self._lost(held) from None
            raise StateError(
                f"{self.location} changed while this command was writing it",
                hint="another writer holds or broke the lock; run the command again",
            ) from None
        if held is not None:
            held.state_version, held.seen = new, True
        return True

    def _lost(self, held: _Held) -> LockLost:
        return LockLost(
            f"lost the state lock on {self.location}: {held.lost}; stopped before "
            "changing anything more",
            hint="what was done is kept (in state, or found by lineage on the next plan); "
            "run the command again once the other holder is done",
        )

    def _fence(self) -> _Held | None:
        """Before a write under the lock: prove the lease is still ours."""
        held = self._held
        if held is None:
            return None
        if held.lost:
            raise self._lost(held)
        if time.monotonic() - held.confirmed <= held.lease / 2:
            return held
        # The renewer is late (this process was paused, or the network cut): renew now.
        try:
            self._renew_once(held)
        except StateError as exc:
            if time.monotonic() - held.confirmed > held.lease:
                held.lost = f"could not renew the lease within {held.lease:g}s ({exc})"
                raise self._lost(held) from None
            return held  # still inside the lease: the write itself is conditional
        if held.lost:
            raise self._lost(held)
        return held

    # -- lock -----------------------------------------------------------------------------
    def _body(self, info: LockInfo, lease: float) -> bytes:
        return json.dumps({**asdict(info), "lease_seconds": lease}).encode()

    def _holder(self) -> tuple[LockInfo | None, Blob | None, float]:
        """(holder, the lock object, its lease); (None, None, 0) when there is no lock."""
        blob = self.objects.get(self.lock_key)
        if blob is None:
            return None, None, 0.0
        try:
            data = json.loads(blob.body)
            info = LockInfo(**{k: data[k] for k in LockInfo.__dataclass_fields__})
            lease = float(data.get("lease_seconds", DEFAULT_LEASE))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            info, lease = None, DEFAULT_LEASE
        return info, blob, lease

    def _try_put(self, info: LockInfo, lease: float, **condition: object) -> str | None:
        try:
            return self.objects.put(self.lock_key, self._body(info, lease), **condition)  # type: ignore[arg-type]
        except Conflict:
            return None

    @contextmanager
    def _locked(
        self, operation: str, timeout: float, notify: Callable[[str], None] | None
    ) -> Iterator[LockInfo]:
        info = new_lock_info(operation)
        lease = lease_seconds()
        deadline = time.monotonic() + timeout
        start = time.monotonic()
        delay = 0.2
        told = False
        seen: tuple[str, float] | None = None  # (lock version, when first seen)
        while True:
            sent = time.monotonic()
            version = self._try_put(info, lease, if_absent=True)
            if version is not None:
                break
            holder, blob, holder_lease = self._holder()
            if blob is None:
                continue  # released in between: try again at once
            if blob.age is not None:
                overdue = blob.age - holder_lease
            else:
                if seen is None or seen[0] != blob.version:
                    seen = (blob.version, time.monotonic())
                overdue = time.monotonic() - seen[1] - holder_lease
            if overdue > 0:
                sent = time.monotonic()
                version = self._try_put(info, lease, if_version=blob.version)
                if version is not None:
                    if notify:
                        who = holder.describe() if holder else "an unreadable lock"
                        notify(
                            f"Took over an expired state lock ({who}; its lease ran out "
                            f"{overdue:.0f}s ago)"
                        )
                    break
                continue
            if not told and notify and time.monotonic() - start > 0.4:
                notify("Acquiring state lock. This may take a few moments...")
                told = True
            if time.monotonic() >= deadline:
                who = holder.describe() if holder else "unknown holder"
                raise LockTimeout(
                    f"the state of this target is locked ({self.location}): {who}",
                    hint="wait for that command, retry with --lock-timeout 60s, or "
                    "`scalable state force-unlock ID` if it is gone (its lease also "
                    f"expires {holder_lease:g}s after it stops renewing)",
                )
            time.sleep(min(delay, max(0.05, deadline - time.monotonic())))
            delay = min(delay * 2, 2.0)

        held = _Held(info=info, version=version, confirmed=sent, lease=lease)
        self._held = held
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(held, stop), name="scalable-state-lock", daemon=True
        )
        renewer.start()
        try:
            yield info
        finally:
            stop.set()
            renewer.join(timeout=30)
            self._held = None
            if not held.lost:
                # Conflict: taken over after our lease ran out, so not ours to delete.
                with suppress(Conflict):
                    self.objects.delete(self.lock_key, if_version=held.version)

    def _renew_once(self, held: _Held) -> None:
        with self._guard:
            if held.lost:
                return
            sent = time.monotonic()
            version = self._try_put(held.info, held.lease, if_version=held.version)
            if version is None:
                held.lost = "the lock object was replaced or deleted by someone else"
                return
            held.version, held.confirmed = version, sent

    def _renew(self, held: _Held, stop: threading.Event) -> None:
        interval = max(held.lease / 3, 0.2)
        while not stop.wait(interval) and not held.lost:
            try:
                self._renew_once(held)
            except StateError:
                continue  # transient: the next round retries; writes check the lease

    def lock(
        self, operation: str, timeout: float = 0.0, notify: Callable[[str], None] | None = None
    ) -> AbstractContextManager[LockInfo]:
        return self._locked(operation, timeout, notify)

    def force_unlock(self, lock_id: str) -> LockInfo:
        holder, blob, _ = self._holder()
        if blob is None:
            raise StateError(f"no lock is held on {self.location}", hint="nothing to unlock")
        if holder is None or holder.id != lock_id:
            raise StateError(
                f"lock ID {lock_id!r} does not match the current lock "
                f"({holder.id if holder else 'unreadable'})",
                hint="copy the ID from the lock error message",
            )
        try:
            self.objects.delete(self.lock_key, if_version=blob.version)
        except Conflict:
            raise StateError(
                "the lock changed while unlocking (renewed or released)",
                hint="read the lock error again and retry",
            ) from None
        return holder
