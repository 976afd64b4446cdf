"""The CI examples run end to end with their state in S3 (moto's server), as a runner runs
them: every step in order, a second run kept out by the S3 state lock, and a destroy
that always runs. The local target stands in for the cloud capacity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from scalable.state.s3 import S3Store

from tests.conftest import Project, our_processes
from tests.integration.ci_pipeline import (
    BIN,
    BUCKET,
    Ran,
    github_steps,
    gitlab_steps,
    manifest,
    run_pipeline,
)

from .motoaws import MotoAws

pytestmark = [pytest.mark.aws, pytest.mark.slow]
KEY = "pipelines/ci/state.json"


@pytest.fixture
def s3(aws: MotoAws) -> MotoAws:
    aws.client("s3").create_bucket(Bucket=BUCKET)
    return aws


def remote_state(aws: MotoAws) -> dict:
    return json.loads(aws.client("s3").get_object(Bucket=BUCKET, Key=KEY)["Body"].read())


def lock_objects(aws: MotoAws) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="pipelines/")
    return [o["Key"] for o in listed.get("Contents", []) if "lock" in o["Key"]]


@pytest.mark.parametrize("flavour", ["github", "gitlab"])
def test_pipeline_runs_in_order_with_s3_state(project: Project, s3: MotoAws,
                                              flavour: str) -> None:
    steps, env = github_steps() if flavour == "github" else gitlab_steps()
    project.write(manifest())
    seen: dict[str, dict] = {}

    def after(ran: Ran) -> None:
        assert ran.returncode == 0, f"{ran.step.script}\n{ran.stdout}\n{ran.stderr}"
        if "apply capacity.plan" in ran.step.script:  # the state is in S3, not on disk
            seen["applied"] = remote_state(s3)
            assert not (project.root / ".scalable" / "ci" / "state.json").exists()

    runs = run_pipeline(project.root, steps, {**env, **s3.env}, after=after)
    out = [r.stdout for r in runs]
    assert "Saved the plan to: capacity.plan" in out[1]
    assert "Apply complete! Resources: 3 added" in out[2]
    assert out[3].strip() == "2500"
    assert "Destroy complete! Resources: 0 added, 0 changed, 3 destroyed." in out[4]
    assert {r["address"] for r in seen["applied"]["resources"]} == {
        "scheduler", "workers.default[0]", "workers.default[1]"}
    final = remote_state(s3)
    assert final["lineage"] == seen["applied"]["lineage"] and final["resources"] == []
    assert lock_objects(s3) == []  # every step let go of the lock
    assert our_processes(project.root) == []


def test_a_second_run_is_kept_out_by_the_lock_and_destroy_still_runs(
    project: Project, s3: MotoAws,
) -> None:
    steps, env = github_steps()
    project.write(manifest())
    holder = S3Store(BUCKET, KEY, "us-east-1").lock("apply (another CI run)")
    info = holder.__enter__()
    held = [True]

    def after(ran: Ran) -> None:
        if held[0] and ran.returncode not in (0, None):
            holder.__exit__(None, None, None)  # the other run ends; destroy may go on
            held[0] = False

    try:
        runs = run_pipeline(project.root, steps, {**env, **s3.env}, after=after)
    finally:
        if held[0]:
            holder.__exit__(None, None, None)
    codes = [r.returncode for r in runs]
    assert codes == [0, 0, 1, None, 0], [(r.step.name, r.stderr) for r in runs]
    apply = runs[2]
    assert "Error: the state of this target is locked" in apply.stderr
    assert info.id in apply.stderr and "apply (another CI run)" in apply.stderr
    assert "Destroy complete!" in runs[4].stdout or "No changes." in runs[4].stdout
    assert our_processes(project.root) == []
    assert lock_objects(s3) == []


def test_a_failed_client_step_still_destroys(project: Project, s3: MotoAws,
                                             tmp_path: Path) -> None:
    steps, env = github_steps()
    project.write(manifest())
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "python").write_text("#!/bin/sh\necho 'client: simulated failure' >&2\nexit 1\n")
    (fake / "python").chmod(0o755)
    path = f"{fake}:{BIN}:{os.environ['PATH']}"
    runs = run_pipeline(project.root, steps, {**env, **s3.env, "PATH": path})
    assert [r.returncode for r in runs] == [0, 0, 0, 1, 0]
    assert "Destroy complete! Resources: 0 added, 0 changed, 3 destroyed." in runs[4].stdout
    assert remote_state(s3)["resources"] == []
    assert our_processes(project.root) == []
