"""``scalable state pull / push / migrate`` through the real CLI, and an apply whose lease is
lost mid-way (stopped with SIGSTOP past it) exiting 3 with what it did kept."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
from scalable.state.model import ResourceRecord, StateFile
from scalable.state.s3 import S3Store
from scalable.state.store import LocalStore

from tests.conftest import Project, our_processes

from .conftest import Harness, make_harness

LOCAL = """
project: {name: itest}
targets:
  local:
    provider: local
    max_workers: 1
    threads_per_worker: 1
    processes: false
"""


def seeded(project: Project) -> StateFile:
    project.write(LOCAL)
    st = StateFile(target="local", provider="local")
    st.resources.append(
        ResourceRecord(
            address="scheduler",
            type="local.process",
            status="ready",
            idempotency_key="k",
            id="pid:1@1",
        )
    )
    LocalStore(project.root / ".scalable" / "local").write(st)
    return st


def test_pull_then_push_by_terraforms_rules(project: Project) -> None:
    st = seeded(project)
    pulled = project.run("state", "pull", check=True).stdout
    doc = json.loads(pulled)
    assert doc == project.state() and doc["serial"] == 1 and doc["lineage"] == st.lineage

    copy = project.root / "copy.json"
    doc["outputs"] = {"note": "edited"}
    copy.write_text(json.dumps(doc))
    same = project.run("state", "push", str(copy))
    assert same.returncode == 1
    assert (
        "cannot overwrite existing state with serial 1 with a different state that "
        "has the same serial" in same.stderr
    )

    doc["serial"] = 5
    copy.write_text(json.dumps(doc))
    out = project.run("state", "push", str(copy), check=True).stdout
    assert "Pushed" in out
    now = project.state()
    assert now["serial"] == 5 and now["outputs"] == {"note": "edited"}
    backup = json.loads((project.root / ".scalable/local/state.json.backup").read_text())
    assert backup["serial"] == 1

    older = {**doc, "serial": 2, "outputs": {}}
    copy.write_text(json.dumps(older))
    refused = project.run("state", "push", str(copy))
    assert refused.returncode == 1
    assert "cannot import state with serial 2 over newer state with serial 5" in refused.stderr

    other = {**doc, "lineage": str(uuid.uuid4()), "serial": 9}
    copy.write_text(json.dumps(other))
    refused = project.run("state", "push", str(copy))
    assert refused.returncode == 1 and "over unrelated state with lineage" in refused.stderr
    assert project.state()["lineage"] == st.lineage  # nothing changed
    forced = project.run("state", "push", "--force", "-", input=json.dumps(other), check=True)
    assert "Pushed <stdin>" in forced.stdout and project.state()["lineage"] == other["lineage"]

    elsewhere = {**other, "target": "gpu", "serial": 10}
    copy.write_text(json.dumps(elsewhere))
    refused = project.run("state", "push", str(copy))
    assert refused.returncode == 1 and "state of target 'gpu'" in refused.stderr

    copy.write_text("[]")
    bad = project.run("state", "push", str(copy))
    assert bad.returncode == 1 and f"{copy}: not a scalable state file" in bad.stderr
    assert "Traceback" not in bad.stderr and project.state()["serial"] == 9


@pytest.mark.aws
@pytest.mark.gcs
@pytest.mark.slow
def test_migrate_a_live_target_local_to_s3_to_gcs(
    project: Project, request: pytest.FixtureRequest, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = make_harness("s3", request, tmp_path, monkeypatch)
    gcs = make_harness("gcs", request, tmp_path, monkeypatch)
    env = {**s3.env, **gcs.env}
    project.write(LOCAL)
    project.run("apply", "--auto-approve", check=True, env=env)
    local = project.state()
    bucket = s3.location.split("/")[2]

    out = project.run("state", "migrate", "--to", f"s3://{bucket}/ci", check=True, env=env).stdout
    assert f"to   s3://{bucket}/ci/local/state.json" in out
    block = re.search(r"^\s+(state: \{backend: s3.*\})$", out, re.M)
    assert block is not None, out
    project.write(LOCAL + block.group(1) + "\n")
    # The manifest now reads the copy: same lineage, nothing to do.
    plan = project.run("plan", "--detailed-exitcode", env=env)
    assert plan.returncode == 0 and "No changes." in plan.stdout, plan.stdout + plan.stderr
    pulled = json.loads(project.run("state", "pull", check=True, env=env).stdout)
    assert pulled["lineage"] == local["lineage"] and pulled["resources"] == local["resources"]

    # A destination holding an unrelated state is refused, and left alone.
    gbucket = gcs.location.split("/")[2]
    project.write(LOCAL + f"state: {{backend: gcs, bucket: {gbucket}, prefix: ci}}\n")
    stranger = StateFile(target="local", provider="local")
    from scalable.state.gcs import GcsStore

    GcsStore(gbucket, "ci/local/state.json").write(stranger)
    refused = project.run("state", "migrate", "--from", f"s3://{bucket}/ci", env=env)
    assert refused.returncode == 1 and "unrelated state" in refused.stderr
    out = project.run(
        "state", "migrate", "--from", f"s3://{bucket}/ci", "--force", check=True, env=env
    ).stdout
    assert f"to   gs://{gbucket}/ci/local/state.json" in out
    plan = project.run("plan", "--detailed-exitcode", env=env)
    assert plan.returncode == 0 and "No changes." in plan.stdout, plan.stdout + plan.stderr
    out = project.run("destroy", "--auto-approve", check=True, env=env).stdout
    assert "destroyed" in out and our_processes(project.root) == []
    assert project.run("state", "migrate", "--to", "local", env=env).returncode == 0


@pytest.mark.aws
@pytest.mark.slow
def test_an_apply_that_loses_its_lease_stops_with_exit_3_and_keeps_what_it_did(
    project: Project,
    request: pytest.FixtureRequest,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3: Harness = make_harness("s3", request, tmp_path, monkeypatch)
    bucket = s3.location.split("/")[2]
    project.write(LOCAL + f"state: {{backend: s3, bucket: {bucket}, key: ci}}\n")
    key = "ci/local/state.json"
    from boto3 import client as boto_client

    api = boto_client("s3", region_name="us-east-1")
    env = {**os.environ, **s3.env, "CI": "1", "NO_COLOR": "1", "SCALABLE_STATE_LOCK_LEASE": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalable", "apply", "--auto-approve", "--no-wait"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait for the write-ahead record of the scheduler, then stop the apply while
        # the provider is starting it.
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            try:
                doc = json.loads(api.get_object(Bucket=bucket, Key=key)["Body"].read())
            except api.exceptions.NoSuchKey:
                doc = {"resources": []}
            if any(r["status"] == "creating" for r in doc["resources"]):
                proc.send_signal(signal.SIGSTOP)
                break
            time.sleep(0.05)
        other = S3Store(bucket, key, "us-east-1")
        with other.lock("state rm (another job)", timeout=120):
            st = other.read()
            assert st is not None
            st.outputs["other_job"] = "was here"
            other.write(st)
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, out + err
    assert "Error: lost the state lock on s3://" in err and "Traceback" not in err
    doc = json.loads(api.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert doc["outputs"].get("other_job") == "was here"  # the other writer's state stands
    # What the apply did is kept and found again: the next apply converges.
    again = project.run("apply", "--auto-approve", env=s3.env)
    assert again.returncode == 0, again.stdout + again.stderr
    project.run("destroy", "--auto-approve", check=True, env=s3.env)
    assert our_processes(project.root) == []
