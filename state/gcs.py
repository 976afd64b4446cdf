"""The GCS state backend, where GKE users keep their state.

``state: {backend: gcs, bucket, prefix}``: the object is ``<prefix>/<target>/state.json``
(default prefix ``scalable/<project>``; a prefix ending in ``.json`` names the object
itself), as for S3. The lock, lease, fencing and backup rules are
:mod:`scalable.state.remote`'s; this module is the adapter: versions are GCS object
generations and every write is conditional (``ifGenerationMatch``, ``0`` meaning "only
if absent"). GCS reports no server time with an object, so a lock's lease is judged by
seeing its generation unchanged for a whole lease on the waiter's own clock.

Credentials: Application Default Credentials (``gcloud auth application-default
login``, a service account, workload identity). ``STORAGE_EMULATOR_HOST`` points the
client at a GCS-API server (tests use fake-gcs-server) with anonymous credentials.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scalable.errors import StateError
from scalable.state.remote import Blob, Conflict, RemoteStore

if TYPE_CHECKING:
    from scalable.manifest.schema import StateBackend
    from scalable.spec import TargetSpec

TIMEOUT = 60.0


class GcsObjects:
    """Conditional object access on one bucket through google-cloud-storage."""

    def __init__(self, bucket: str, project: str | None = None) -> None:
        self.bucket_name = bucket
        self.project = project
        self._bucket: Any = None

    @property
    def bucket(self) -> Any:
        if self._bucket is None:
            self._bucket = self._call("connecting to", "", self._connect)
        return self._bucket

    def _connect(self) -> Any:
        # Heavy: only when a GCS backend is used. (mypy resolves google.cloud to another
        # installed google-cloud package's namespace, without storage.)
        from google.cloud import storage  # type: ignore[attr-defined]

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            client = storage.Client(
                project=self.project or "scalable", credentials=AnonymousCredentials()
            )
        else:
            client = storage.Client(project=self.project)
        return client.bucket(self.bucket_name)

    def url(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{key}"

    def permission_hint(self, key: str) -> str:
        return (
            f"the credentials need storage.objects.get, create and delete on "
            f"gs://{self.bucket_name} (roles/storage.objectUser)"
        )

    def _call(
        self,
        what: str,
        key: str,
        fn: Callable[[], Any],
        *,
        missing_ok: bool = False,
    ) -> Any:
        from google.api_core import exceptions as gx
        from google.auth import exceptions as ax

        try:
            return fn()
        except gx.PreconditionFailed as exc:
            raise Conflict(str(exc)) from None
        except gx.NotFound as exc:
            if missing_ok and "bucket" not in str(exc).lower():
                return None
            hint = None
            if "bucket" in str(exc).lower():
                hint = (
                    f"create the bucket first: gcloud storage buckets create "
                    f"gs://{self.bucket_name}"
                )
            raise StateError(
                f"{what} {self.url(key)}: not found ({_short(exc)})", hint=hint
            ) from None
        except (gx.Forbidden, gx.Unauthorized) as exc:
            raise StateError(
                f"{what} {self.url(key)}: permission denied ({_short(exc)})",
                hint=self.permission_hint(key),
            ) from None
        except ax.DefaultCredentialsError:
            raise StateError(
                f"{what} {self.url(key)}: no Google Cloud credentials found",
                hint="run `gcloud auth application-default login`, or set "
                "GOOGLE_APPLICATION_CREDENTIALS to a service account key "
                "file",
            ) from None
        except (gx.GoogleAPIError, ax.GoogleAuthError, OSError) as exc:
            raise StateError(
                f"{what} {self.url(key)}: {type(exc).__name__}: {_short(exc)}",
                hint="check the network and STORAGE_EMULATOR_HOST, if set",
            ) from None

    def get(self, key: str) -> Blob | None:
        def fetch() -> Blob | None:
            blob = self.bucket.get_blob(key, timeout=TIMEOUT)
            if blob is None:
                return None
            # Exactly the generation whose metadata we just read.
            body = blob.download_as_bytes(if_generation_match=blob.generation, timeout=TIMEOUT)
            return Blob(body=body, version=str(blob.generation))

        for _ in range(5):
            try:
                return self._call("reading", key, fetch, missing_ok=True)
            except Conflict:
                continue  # rewritten between metadata and body: read again
        raise StateError(
            f"reading {self.url(key)}: it keeps changing while being read",
            hint="another writer is busy; run the command again",
        )

    def put(
        self, key: str, body: bytes, *, if_version: str | None = None, if_absent: bool = False
    ) -> str:
        blob = self.bucket.blob(key)
        match = 0 if if_absent else (int(if_version) if if_version else None)
        self._call(
            "writing",
            key,
            lambda: blob.upload_from_string(
                body, content_type="application/json", if_generation_match=match, timeout=TIMEOUT
            ),
        )
        return str(blob.generation)

    def delete(self, key: str, *, if_version: str) -> None:
        # Checked first as well: not every GCS-API server honours the precondition on
        # delete (fake-gcs-server does not), and it narrows the window on those.
        current = self._call(
            "reading", key, lambda: self.bucket.get_blob(key, timeout=TIMEOUT), missing_ok=True
        )
        if current is None:
            return
        if str(current.generation) != if_version:
            raise Conflict(f"{key} is at generation {current.generation}, not {if_version}")
        self._call(
            "deleting",
            key,
            lambda: self.bucket.delete_blob(
                key, if_generation_match=int(if_version), timeout=TIMEOUT
            ),
            missing_ok=True,
        )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("…" if len(text) > 200 else "")


class GcsStore(RemoteStore):
    """State in one GCS object, locked by a second one."""

    def __init__(self, bucket: str, key: str, project: str | None = None) -> None:
        super().__init__(GcsObjects(bucket, project), key)
        self.bucket = bucket

    @classmethod
    def from_config(cls, cfg: StateBackend, spec: TargetSpec) -> GcsStore:
        if not cfg.bucket:
            raise StateError("the gcs state backend needs a bucket")
        prefix = (cfg.prefix or f"scalable/{spec.project}").strip("/")
        key = prefix if prefix.endswith(".json") else f"{prefix}/{spec.name}/state.json"
        return cls(cfg.bucket, key)
