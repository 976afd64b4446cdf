"""A shared cache behind the local one: S3 (``SCALABLE_CACHE_REMOTE=s3://bucket/prefix/``).

Objects hold the same bytes as local entries (``<prefix><function>/<key>``), so the
checksum guards them too. A PUT of one object is atomic in S3, so concurrent writers
of one key are safe. Any error reaching the remote is a warning and a miss (on read)
or a skipped upload (on write): a remote that is down slows a run, never breaks it.
boto3 is imported on first use and honours ``AWS_ENDPOINT_URL`` and the usual
credential chain.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Any
from urllib.parse import urlparse

from scalable.cache.store import CacheWarning, function_dir


class RemoteConfigError(ValueError):
    pass


class S3Remote:
    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise RemoteConfigError(
                f"SCALABLE_CACHE_REMOTE {url!r} is not an s3://bucket/prefix/ URL"
            )
        self.url = url
        self.bucket = parsed.netloc
        prefix = parsed.path.lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.client(
                    "s3", config=Config(retries={"max_attempts": 3, "mode": "standard"})
                )
            return self._client

    def object_key(self, function: str, key: str) -> str:
        return f"{self.prefix}{function_dir(function)}/{key}"

    def get_bytes(self, function: str, key: str) -> bytes | None:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.object_key(function, key))
            return bytes(resp["Body"].read())
        except Exception as exc:
            if _not_found(exc):
                return None
            warnings.warn(
                f"remote cache {self.url} unreadable ({exc}); treating as a miss",
                CacheWarning,
                stacklevel=3,
            )
            return None

    def put_bytes(self, function: str, key: str, data: bytes) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self.object_key(function, key), Body=data
            )
        except Exception as exc:
            warnings.warn(
                f"remote cache {self.url}: upload failed ({exc})", CacheWarning, stacklevel=3
            )

    def delete(self, function: str, key: str) -> None:
        with contextlib.suppress(Exception):
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(function, key))

    def keys(self, function: str | None = None) -> list[str]:
        prefix = self.prefix + (function_dir(function) + "/" if function else "")
        out: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            out += [o["Key"] for o in page.get("Contents", [])]
        return out


def _not_found(exc: Exception) -> bool:
    resp = getattr(exc, "response", None)
    code = (resp or {}).get("Error", {}).get("Code") if isinstance(resp, dict) else None
    return code in ("NoSuchKey", "404", "NotFound")
