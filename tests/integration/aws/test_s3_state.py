"""The S3 state backend against a moto server: format, serials, backups, lock and lease."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from scalable.errors import StateError
from scalable.state.lock import LockTimeout
from scalable.state.model import ResourceRecord, StateFile
from scalable.state.s3 import S3Store
from scalable.state.store import LocalStore

from .motoaws import MotoAws

pytestmark = pytest.mark.aws
BUCKET = "scalable-ci-state"


@pytest.fixture
def bucket(aws: MotoAws) -> str:
    aws.client("s3").create_bucket(Bucket=BUCKET)
    return BUCKET


def store(key: str = "ci/cloud/state.json") -> S3Store:
    return S3Store(BUCKET, key, "us-east-1")


def sample() -> StateFile:
    st = StateFile(target="cloud", provider="aws")
    st.resources.append(ResourceRecord(address="scheduler", type="aws.ec2_instance",
                                       status="ready", idempotency_key="k1", id="i-1"))
    return st


def test_same_format_as_local_serial_bumps_only_on_change(bucket: str, aws: MotoAws,
                                                          tmp_path: Path) -> None:
    s3 = store()
    assert s3.read() is None
    st = sample()
    assert s3.write(st) is True and st.serial == 1
    again = s3.read()
    assert again is not None and again.to_dict() == st.to_dict()
    assert s3.write(again) is False and again.serial == 1  # no change, no bump
    again.outputs["scheduler_address"] = "tls://10.0.0.1:8786"
    assert s3.write(again) is True and again.serial == 2
    body = aws.client("s3").get_object(Bucket=bucket, Key="ci/cloud/state.json")["Body"].read()
    backup = aws.client("s3").get_object(Bucket=bucket, Key="ci/cloud/state.json.backup")
    assert json.loads(backup["Body"].read())["serial"] == 1
    local = LocalStore(tmp_path)
    local.write(StateFile.from_dict(json.loads(body)))
    assert json.loads((tmp_path / "state.json").read_text()).keys() == json.loads(body).keys()


def test_key_prefix_per_target(aws: MotoAws) -> None:
    from types import SimpleNamespace

    from scalable.manifest.schema import StateBackend

    spec = SimpleNamespace(project="demo", name="cloud")
    cfg = StateBackend(backend="s3", bucket=BUCKET, key="teams/a/")
    assert S3Store.from_config(cfg, spec).location == f"s3://{BUCKET}/teams/a/cloud/state.json"
    cfg = StateBackend(backend="s3", bucket=BUCKET)
    assert S3Store.from_config(cfg, spec).key == "scalable/demo/cloud/state.json"
    cfg = StateBackend(backend="s3", bucket=BUCKET, key="exact/one.json")
    assert S3Store.from_config(cfg, spec).key == "exact/one.json"


def test_lock_is_exclusive_names_holder_and_is_released(bucket: str) -> None:
    a, b = store(), store()
    with a.lock("apply") as held:
        with pytest.raises(LockTimeout) as err, b.lock("plan", timeout=0.5):
            pass
        assert held.id in err.value.message and "Operation: apply" in err.value.message
        assert "force-unlock" in (err.value.hint or "")
    with b.lock("plan") as second:
        assert second.id != held.id


def test_lease_is_renewed_while_held(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALABLE_S3_LOCK_LEASE", "1.5")
    a, b = store(), store()
    with a.lock("apply"):
        time.sleep(4)  # well past one lease: only renewals keep it
        with pytest.raises(LockTimeout), b.lock("plan", timeout=0.3):
            pass


def test_expired_lease_of_a_killed_holder_is_taken_over(bucket: str, aws: MotoAws) -> None:
    code = textwrap.dedent(f"""
        import time
        from scalable.state.s3 import S3Store
        with S3Store({BUCKET!r}, "ci/cloud/state.json", "us-east-1").lock("apply"):
            print("locked", flush=True)
            time.sleep(600)
    """)
    env = {**os.environ, **aws.env, "SCALABLE_S3_LOCK_LEASE": "2"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        proc.send_signal(signal.SIGKILL)  # no release, no more renewals
        proc.wait(timeout=30)
        told: list[str] = []
        # Within the lease it is still held.
        with pytest.raises(LockTimeout), store().lock("apply", timeout=0):
            pass
        start = time.monotonic()
        with store().lock("apply", timeout=30, notify=told.append):
            waited = time.monotonic() - start
        assert any("Took over an expired state lock" in t for t in told), told
        assert waited < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_force_unlock_and_the_old_holder_cannot_write(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALABLE_S3_LOCK_LEASE", "3")
    holder, other = store(), store()
    with holder.lock("apply") as info:
        with pytest.raises(StateError, match="does not match"):
            other.force_unlock("not-the-id")
        gone = other.force_unlock(info.id)
        assert gone.id == info.id
        with other.lock("apply", timeout=0):
            pass
        deadline = time.monotonic() + 30
        while holder._held is not None and not holder._held.lost:  # noqa: SLF001
            if time.monotonic() > deadline:
                raise AssertionError("the holder never noticed")
            time.sleep(0.2)
        with pytest.raises(StateError, match="lost the state lock"):
            holder.write(sample())
    with pytest.raises(StateError, match="no lock is held"):
        other.force_unlock(info.id)


def test_conditional_write_refuses_a_concurrent_change(bucket: str, aws: MotoAws) -> None:
    s3 = store()
    st = sample()
    s3.write(st)
    real_get = s3.objects.get

    def stale_get(key: str):  # type: ignore[no-untyped-def]
        found = real_get(key)
        if key == s3.key:  # someone else writes between our read and our put
            aws.client("s3").put_object(Bucket=bucket, Key="ci/cloud/state.json",
                                        Body=json.dumps({**st.to_dict(), "serial": 9}).encode())
        return found

    s3.objects.get = stale_get  # type: ignore[method-assign]
    st.outputs["x"] = "y"
    with pytest.raises(StateError, match="changed while this command was writing"):
        s3.write(st)


MANIFEST = f"""
version: 1
project: {{name: demo}}
state: {{backend: s3, bucket: {BUCKET}, key: ci}}
targets:
  cloud:
    provider: aws
    region: us-east-1
    instance_type: m6i.large
    max_workers: 3
"""


def test_two_concurrent_applies_with_the_s3_backend(project, bucket: str, aws: MotoAws) -> None:
    project.write(MANIFEST)
    env = {**os.environ, **aws.env, "CI": "1", "NO_COLOR": "1"}
    argv = [sys.executable, "-m", "scalable", "apply", "--auto-approve", "--no-wait",
            "--lock-timeout", "120s"]
    procs = [subprocess.Popen(argv, cwd=project.root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + err
    texts = [o for o, _ in outs]
    assert sum("Resources: 5 added" in t for t in texts) == 1, texts
    assert sum("No changes." in t for t in texts) == 1, texts
    assert not (project.root / ".scalable/cloud/state.json").exists()  # state lives in S3
    state = json.loads(aws.client("s3").get_object(
        Bucket=bucket, Key="ci/cloud/state.json")["Body"].read())
    live = aws.live_instances(state["lineage"])
    names = Counter({t["Key"]: t["Value"] for t in i["Tags"]}["scalable:address"]
                    for i in live)
    assert names == {"scheduler": 1, "workers.default[0]": 1, "workers.default[1]": 1,
                     "workers.default[2]": 1}
    assert aws.client("s3").list_objects_v2(Bucket=bucket, Prefix="ci/cloud/state.json.lock")[
        "KeyCount"] == 0

    # A held lock makes a no-wait apply fail at once, naming the holder.
    with S3Store(bucket, "ci/cloud/state.json", "us-east-1").lock("apply (CI job 41)") as info:
        proc = project.run("apply", "--auto-approve", "--no-wait", env=aws.env)
        assert proc.returncode == 1
        assert info.id in proc.stderr and "apply (CI job 41)" in proc.stderr
        assert f"s3://{bucket}/ci/cloud/state.json" in proc.stderr
    out = project.run("destroy", "--auto-approve", env=aws.env, check=True).stdout
    assert "5 destroyed" in out and aws.live_instances(state["lineage"]) == []
