"""examples/aws.yaml is runnable: both targets plan, apply and destroy against moto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .motoaws import MotoAws

pytestmark = pytest.mark.aws
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "aws.yaml"


def test_example_manifest_plans_applies_and_destroys(project, aws: MotoAws) -> None:
    project.write(EXAMPLE.read_text())
    aws.client("s3").create_bucket(Bucket="my-team-scalable-state")
    # eu-west-1 for the Fargate target: the client follows the manifest's region.
    plan = json.loads(project.run("plan", "--json", "-t", "fargate", env=aws.env,
                                  check=True).stdout)
    assert plan["cost"]["hourly_after"] > 0 and not plan["cost"]["unknown"]
    out = project.run("apply", "--auto-approve", "--no-wait", env=aws.env, check=True).stdout
    assert "Apply complete! Resources: 12 added" in out  # SG + scheduler + 2 + 8 workers
    key = "scalable/climate-ensemble/ec2/state.json"
    state = json.loads(aws.client("s3").get_object(
        Bucket="my-team-scalable-state", Key=key)["Body"].read())
    live = aws.live_instances(state["lineage"])
    assert len(live) == 11
    tags = {t["Key"]: t["Value"] for t in live[0]["Tags"]}
    assert tags["team"] == "climate" and tags["cost-center"] == "1234"
    out = project.run("destroy", "--auto-approve", env=aws.env, check=True).stdout
    assert "12 destroyed" in out
    assert aws.live_instances(state["lineage"]) == []
