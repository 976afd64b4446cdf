"""The S3 state backend, for CI where runners are ephemeral.

Same JSON format as the local backend. ``state: {backend: s3, bucket, key, region}``:
``key`` ending in ``.json`` names the state object itself; otherwise it is a prefix
(default ``scalable/<project>``) and the object is ``<prefix>/<target>/state.json``, so
one top-level ``state:`` block serves every target.

The lock, lease, fencing and backup rules are :mod:`scalable.state.remote`'s; this
module is the S3 adapter: versions are ETags, conditions are ``If-Match`` and
``If-None-Match: *`` (S3 has honoured both on PutObject since 2024, and on
DeleteObject ``If-Match``), and a lock's age is read on S3's clock (its Last-Modified
against the response's Date).
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from scalable.awserrors import configured_region, describe, error_code
from scalable.errors import StateError
from scalable.state.remote import Blob, Conflict, RemoteStore

if TYPE_CHECKING:
    from scalable.manifest.schema import StateBackend
    from scalable.spec import TargetSpec


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def _conflict(exc: BaseException) -> bool:
    """A conditional request lost: 412 PreconditionFailed or 409 ConditionalRequestConflict."""
    return error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict") or _status(
        exc
    ) in (409, 412)


def _missing(exc: BaseException) -> bool:
    return error_code(exc) in ("NoSuchKey", "404", "NotFound") or _status(exc) == 404


class S3Objects:
    """Conditional object access on one bucket through boto3."""

    def __init__(self, bucket: str, region: str | None) -> None:
        self.bucket = bucket
        self.region = region
        self._client: Any = None

    @property
    def s3(self) -> Any:
        if self._client is None:
            import boto3  # heavy: only when an S3 backend is actually used
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3",
                region_name=self.region,
                config=Config(
                    retries={"mode": "standard", "max_attempts": 8},
                    connect_timeout=10,
                    read_timeout=60,
                ),
            )
        return self._client

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def permission_hint(self, key: str) -> str:
        return (
            f"the credentials need s3:GetObject, s3:PutObject and s3:DeleteObject "
            f"on arn:aws:s3:::{self.bucket}/{key}*"
        )

    def _error(self, exc: BaseException, what: str, key: str) -> StateError:
        message, hint = describe(exc, f"{what} {self.url(key)}")
        code = error_code(exc)
        if code == "NoSuchBucket":
            hint = f"create the bucket first: aws s3 mb s3://{self.bucket}"
        elif code in ("AccessDenied", "403") or _status(exc) == 403:
            hint = self.permission_hint(key)
        return StateError(message, hint=hint)

    def _call(
        self,
        what: str,
        key: str,
        fn: Callable[[], Any],
        *,
        missing_ok: bool = False,
    ) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except (BotoCoreError, ClientError) as exc:
            if _conflict(exc):
                raise Conflict(str(exc)) from None
            if missing_ok and _missing(exc):
                return None
            raise self._error(exc, what, key) from None

    def get(self, key: str) -> Blob | None:
        obj = self._call(
            "reading", key, lambda: self.s3.get_object(Bucket=self.bucket, Key=key), missing_ok=True
        )
        if obj is None:
            return None
        body = self._call("reading", key, lambda: obj["Body"].read())
        age = None
        date = obj.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        modified = obj.get("LastModified")
        if date and modified is not None:
            age = (parsedate_to_datetime(date) - modified).total_seconds()
        return Blob(body=body, version=str(obj.get("ETag", "")), age=age)

    def put(
        self, key: str, body: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        condition = {"IfMatch": if_version} if if_version else {}
        if if_absent:
            condition = {"IfNoneMatch": "*"}
        try:
            out = self._call(
                "writing",
                key,
                lambda: self.s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    **condition,
                ),
            )
        except StateError as err:
            # If-Match on an object that is gone answers 404: the condition failed.
            if if_version and "NoSuchKey" in err.message:
                raise Conflict(err.message) from None
            raise
        return str(out.get("ETag", ""))

    def delete(self, key: str, *, if_version: str) -> None:
        self._call(
            "deleting",
            key,
            lambda: self.s3.delete_object(Bucket=self.bucket, Key=key, IfMatch=if_version),
            missing_ok=True,
        )


class S3Store(RemoteStore):
    """State in one S3 object, locked by a second one."""

    def __init__(self, bucket: str, key: str, region: str | None = None) -> None:
        super().__init__(S3Objects(bucket, region), key)
        self.bucket = bucket
        self.region = region

    @classmethod
    def from_config(cls, cfg: StateBackend, spec: TargetSpec) -> S3Store:
        if not cfg.bucket:
            raise StateError("the s3 state backend needs a bucket")
        key = (cfg.key or f"scalable/{spec.project}").strip("/")
        if not key.endswith(".json"):
            key = f"{key}/{spec.name}/state.json"
        return cls(cfg.bucket, key, configured_region(cfg.region))
