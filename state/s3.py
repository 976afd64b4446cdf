"""The S3 state backend, for CI where runners are ephemeral.

Same JSON format as the local backend. ``state: {backend: s3, bucket, key, region}``:
``key`` ending in ``.json`` names the state object itself; otherwise it is a prefix
(default ``scalable/<project>``) and the object is ``<prefix>/<target>/state.json``, so
one top-level ``state:`` block serves every target.

- Writes: one ``PutObject`` replaces the object whole (S3 never shows half an object);
  the previous version is copied to ``state.json.backup`` first; the put is conditional
  on the ETag read just before (``If-Match``), or on there being none (``If-None-Match``),
  so a writer that lost its lock can never overwrite someone else's state. The serial
  is bumped only when the content changes.
- Lock: ``state.json.lock``, created with a conditional put (``If-None-Match: *``) that
  only one writer can win. It carries the holder (ID, operation, user@host, pid, created)
  and a lease that a background thread renews; a lock whose lease ran out (its holder
  was killed) may be taken over, by a put conditional on the stale lock's ETag.
  Expiry is judged on S3's clock (the lock's Last-Modified against the response's Date),
  so clock skew between runners does not matter. ``scalable state force-unlock ID``
  deletes the lock object if the ID matches.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from scalable.errors import StateError
from scalable.state.lock import LockInfo, LockTimeout, new_lock_info
from scalable.state.model import StateFile

if TYPE_CHECKING:
    from scalable.manifest.schema import StateBackend
    from scalable.spec import TargetSpec

DEFAULT_LEASE = 60.0


def lease_seconds() -> float:
    return float(os.environ.get("SCALABLE_S3_LOCK_LEASE", DEFAULT_LEASE))


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def _conflict(exc: BaseException) -> bool:
    """A conditional request lost: 412 PreconditionFailed or 409 ConditionalRequestConflict."""
    return _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict") or \
        _status(exc) in (409, 412)


def _missing(exc: BaseException) -> bool:
    return _code(exc) in ("NoSuchKey", "404", "NotFound") or _status(exc) == 404


@dataclass
class _Held:
    info: LockInfo
    etag: str
    lost: str = ""


class S3Store:
    """State in one S3 object, locked by a second one."""

    def __init__(self, bucket: str, key: str, region: str | None = None) -> None:
        self.bucket = bucket
        self.key = key
        self.lock_key = f"{key}.lock"
        self.backup_key = f"{key}.backup"
        self.region = region
        self.location = f"s3://{bucket}/{key}"
        self._client: Any = None
        self._held: _Held | None = None
        self._guard = threading.Lock()

    @classmethod
    def from_config(cls, cfg: StateBackend, spec: TargetSpec) -> S3Store:
        if not cfg.bucket:
            raise StateError("the s3 state backend needs a bucket")
        key = (cfg.key or f"scalable/{spec.project}").strip("/")
        if not key.endswith(".json"):
            key = f"{key}/{spec.name}/state.json"
        from scalable.providers.aws.session import configured_region

        return cls(cfg.bucket, key, configured_region(cfg.region))

    # -- plumbing -------------------------------------------------------------------------
    @property
    def s3(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3", region_name=self.region,
                config=Config(retries={"mode": "standard", "max_attempts": 8},
                              connect_timeout=10, read_timeout=60),
            )
        return self._client

    def _error(self, exc: BaseException, what: str) -> StateError:
        from scalable.providers.aws.session import translate

        err = translate(exc, f"{what} {self.location}")
        code = _code(exc)
        hint = err.hint
        if code == "NoSuchBucket":
            hint = f"create the bucket first: aws s3 mb s3://{self.bucket}"
        elif code in ("AccessDenied", "403") or _status(exc) == 403:
            hint = (f"the credentials need s3:GetObject, s3:PutObject and s3:DeleteObject "
                    f"on arn:aws:s3:::{self.bucket}/{self.key}*")
        return StateError(err.message, hint=hint)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            from botocore.exceptions import BotoCoreError, ClientError

            if isinstance(exc, BotoCoreError | ClientError):
                raise self._error(exc, what) from None
            raise

    # -- state ----------------------------------------------------------------------------
    def _get(self) -> tuple[StateFile | None, str | None]:
        from botocore.exceptions import ClientError

        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if _missing(exc):
                return None, None
            raise self._error(exc, "reading") from None
        except Exception as exc:
            raise self._error(exc, "reading") from None
        body = obj["Body"].read()
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise StateError(f"{self.location}: not valid JSON ({exc})",
                             hint=f"the previous version is in s3://{self.bucket}/"
                             f"{self.backup_key}") from None
        return StateFile.from_dict(data, source=self.location), obj.get("ETag")

    def read(self) -> StateFile | None:
        return self._get()[0]

    def write(self, state: StateFile) -> bool:
        from scalable._version import __version__

        held = self._held
        if held is not None and held.lost:
            raise StateError(f"lost the state lock on {self.location}: {held.lost}",
                             hint="someone force-unlocked or took over the lock; nothing "
                             "was written. Run the command again.")
        previous, etag = self._get()
        if previous is not None and previous.content() == state.content():
            state.serial = previous.serial
            return False
        state.serial = (previous.serial if previous else state.serial) + 1
        state.scalable_version = __version__
        body = json.dumps(state.to_dict(), indent=2).encode() + b"\n"
        if previous is not None:
            self._call("backing up", lambda: self.s3.copy_object(
                Bucket=self.bucket, Key=self.backup_key,
                CopySource={"Bucket": self.bucket, "Key": self.key}))
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                               ContentType="application/json", **condition)
        except Exception as exc:
            if _conflict(exc):
                raise StateError(
                    f"{self.location} changed while this command was writing it",
                    hint="another writer holds or broke the lock; run the command again",
                ) from None
            raise self._error(exc, "writing") from None
        return True

    # -- lock -----------------------------------------------------------------------------
    def _body(self, info: LockInfo) -> bytes:
        return json.dumps({**asdict(info), "lease_seconds": lease_seconds(),
                           "backend": "s3"}).encode()

    def _holder(self) -> tuple[LockInfo | None, str | None, float]:
        """(holder, ETag, seconds since its last renewal by S3's clock); none: (None…)."""
        from botocore.exceptions import ClientError

        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self.lock_key)
        except ClientError as exc:
            if _missing(exc):
                return None, None, 0.0
            raise self._error(exc, "reading the lock of") from None
        try:
            data = json.loads(obj["Body"].read())
            info = LockInfo(**{k: data[k] for k in LockInfo.__dataclass_fields__})
            lease = float(data.get("lease_seconds", DEFAULT_LEASE))
        except (ValueError, KeyError, TypeError):
            info, lease = None, DEFAULT_LEASE
        age = 0.0
        date = obj.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        modified = obj.get("LastModified")
        if date and modified is not None:
            age = (parsedate_to_datetime(date) - modified).total_seconds()
        age -= lease  # > 0: the lease ran out that long ago
        return info, obj.get("ETag"), age

    def _try_put(self, info: LockInfo, **condition: str) -> str | None:
        try:
            out = self.s3.put_object(Bucket=self.bucket, Key=self.lock_key,
                                     Body=self._body(info), ContentType="application/json",
                                     **condition)
        except Exception as exc:
            if _conflict(exc) or _missing(exc):  # If-Match on a deleted lock: 404
                return None
            raise self._error(exc, "locking") from None
        return str(out.get("ETag", ""))

    @contextmanager
    def _locked(
        self, operation: str, timeout: float, notify: Callable[[str], None] | None
    ) -> Iterator[LockInfo]:
        info = new_lock_info(operation)
        deadline = time.monotonic() + timeout
        start = time.monotonic()
        delay = 0.2
        told = False
        while True:
            etag = self._try_put(info, IfNoneMatch="*")
            if etag is not None:
                break
            holder, holder_etag, overdue = self._holder()
            if holder_etag is None:
                continue  # released in between: try again at once
            if overdue > 0:
                etag = self._try_put(info, IfMatch=holder_etag)
                if etag is not None:
                    if notify:
                        who = holder.describe() if holder else "an unreadable lock"
                        notify(f"Took over an expired state lock ({who}; its lease ran out "
                               f"{overdue:.0f}s ago)")
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
                    f"expires {lease_seconds():g}s after it stops renewing)",
                )
            time.sleep(min(delay, max(0.05, deadline - time.monotonic())))
            delay = min(delay * 2, 2.0)

        held = _Held(info=info, etag=etag)
        self._held = held
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(held, stop),
                                   name="scalable-s3-lock", daemon=True)
        renewer.start()
        try:
            yield info
        finally:
            stop.set()
            renewer.join(timeout=30)
            self._held = None
            if not held.lost:
                try:
                    self.s3.delete_object(Bucket=self.bucket, Key=self.lock_key,
                                          IfMatch=held.etag)
                except Exception as exc:
                    if not (_conflict(exc) or _missing(exc)):
                        raise self._error(exc, "unlocking") from None

    def _renew(self, held: _Held, stop: threading.Event) -> None:
        interval = max(lease_seconds() / 3, 0.2)
        while not stop.wait(interval):
            with self._guard:
                try:
                    etag = self._try_put(held.info, IfMatch=held.etag)
                except StateError:
                    continue  # transient: the next round retries before the lease ends
                if etag is None:
                    held.lost = "the lock object was replaced or deleted by someone else"
                    return
                held.etag = etag

    def lock(
        self, operation: str, timeout: float = 0.0, notify: Callable[[str], None] | None = None
    ) -> AbstractContextManager[LockInfo]:
        return self._locked(operation, timeout, notify)

    def force_unlock(self, lock_id: str) -> LockInfo:
        holder, etag, _ = self._holder()
        if etag is None:
            raise StateError(f"no lock is held on {self.location}", hint="nothing to unlock")
        if holder is None or holder.id != lock_id:
            raise StateError(
                f"lock ID {lock_id!r} does not match the current lock "
                f"({holder.id if holder else 'unreadable'})",
                hint="copy the ID from the lock error message",
            )
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.lock_key, IfMatch=etag)
        except Exception as exc:
            if _conflict(exc):
                raise StateError("the lock changed while unlocking (renewed or released)",
                                 hint="read the lock error again and retry") from None
            if not _missing(exc):
                raise self._error(exc, "unlocking") from None
        return holder
