"""`scalable sweep` and `scalable import` on EC2 and Fargate, through the real CLI, on moto.

A CI run whose state is deleted mid-way is swept clean; an instance or a task is
imported by its id, checked against AWS, and refused when another state holds it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Project

from .motoaws import MotoAws
from .test_ec2 import write as write_ec2
from .test_fargate import write as write_fargate

pytestmark = pytest.mark.aws


def run(project: Project, aws: MotoAws, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return project.run(*args, env=aws.env, check=check)


def lost(project: Project, aws: MotoAws) -> list[dict]:
    doc = json.loads(run(project, aws, "sweep", "--json").stdout)
    assert doc["not_swept"] == [] and doc["errors"] == []
    return doc["lost"]


def swept_clean(project: Project, aws: MotoAws, target: str) -> list[dict]:
    """Lose the state of an applied target, sweep (dry, then --destroy), sweep again.

    Returns what the dry run listed."""
    state = project.state(target)
    ids = {r["id"] for r in state["resources"]}
    assert "No lost resources" in run(project, aws, "sweep").stdout  # all held by the state

    (project.root / ".scalable" / target / "state.json").unlink()  # the runner is gone
    found = lost(project, aws)
    assert {x["id"] for x in found} == ids
    assert {x["lineage"] for x in found} == {state["lineage"]}
    assert json.loads(run(project, aws, "sweep", "--json", "--lineage", "nope").stdout)[
        "lost"] == []
    dry = run(project, aws, "sweep").stdout
    assert f"{len(ids)} resource(s) created by scalable that no state holds" in dry
    assert "This was a dry run." in dry
    assert {x["id"] for x in lost(project, aws)} == ids  # a dry run deletes nothing

    out = run(project, aws, "sweep", "--destroy", "--auto-approve").stdout
    assert f"Sweep complete! Resources: {len(ids)} destroyed." in out
    assert lost(project, aws) == []
    assert "No lost resources" in run(project, aws, "sweep").stdout
    return found


def test_ec2_run_whose_state_is_deleted_is_swept_clean(project: Project, aws: MotoAws) -> None:
    write_ec2(project, ondemand=2, spot=1)
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    lineage = project.state("cloud")["lineage"]
    assert len(aws.live_instances(lineage)) == 4

    found = swept_clean(project, aws, "cloud")
    instances = [x for x in found if x["type"] == "aws.ec2_instance"]
    assert len(instances) == 4
    for x in instances:  # age from LaunchTime, cost so far from the catalog price
        assert x["age_seconds"] is not None and x["age_seconds"] >= 0
        assert x["hourly_usd"] > 0 and x["cost_so_far_usd"] is not None
    assert aws.live_instances(lineage) == []
    groups = aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:scalable:lineage", "Values": [lineage]}])["SecurityGroups"]
    assert groups == []


def test_sweep_leaves_another_projects_capacity_alone(project: Project, aws: MotoAws,
                                                      tmp_path: Path) -> None:
    other = Project(tmp_path / "other")
    other.root.mkdir()
    write_ec2(other, ondemand=1, spot=0)
    other.write((other.root / "scalable.yaml").read_text().replace("name: demo",
                                                                    "name: elsewhere"))
    run(other, aws, "apply", "--auto-approve", "--no-wait")
    (other.root / ".scalable" / "cloud" / "state.json").unlink()
    write_ec2(project, ondemand=1, spot=0)
    # Same account and region, another project's lost capacity: not this manifest's.
    assert lost(project, aws) == []
    assert len(lost(other, aws)) == 3  # scheduler, worker, security group
    run(other, aws, "sweep", "--destroy", "--auto-approve")
    assert aws.live_instances() == []


def test_import_an_instance_by_id_checked_against_aws(project: Project, aws: MotoAws,
                                                      tmp_path: Path) -> None:
    write_ec2(project, ondemand=2, spot=0)
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    held = {r["address"]: r for r in project.state("cloud")["resources"]}
    iid = held["workers.ondemand[1]"]["id"]
    assert iid.startswith("i-")
    run(project, aws, "state", "rm", "workers.ondemand[1]")
    nope = run(project, aws, "import", "workers.ondemand[1]", "i-0000000000000000", check=False)
    assert nope.returncode == 1
    assert nope.stderr.startswith("Error: Cannot import non-existent remote object")
    out = run(project, aws, "import", "workers.ondemand[1]", iid).stdout
    assert "Import successful!" in out
    rec = {r["address"]: r for r in project.state("cloud")["resources"]}["workers.ondemand[1]"]
    assert rec["id"] == iid and rec["status"] == "ready"
    assert rec["meta"]["instance_id"] == iid
    assert "No changes." in run(project, aws, "plan").stdout

    # Another state's instance (same project and target, another lineage) is refused.
    other = Project(tmp_path / "other")
    other.root.mkdir()
    write_ec2(other, ondemand=2, spot=0)
    run(other, aws, "apply", "--auto-approve", "--no-wait")
    theirs = {r["address"]: r for r in other.state("cloud")["resources"]}
    foreign = theirs["workers.ondemand[0]"]["id"]
    write_ec2(project, ondemand=3, spot=0)  # a third worker: adopt theirs as it
    refused = run(project, aws, "import", "workers.ondemand[2]", foreign, check=False)
    assert refused.returncode == 1
    assert f"Error: {foreign} belongs to another state (lineage " \
           f"{other.state('cloud')['lineage']}" in refused.stderr
    forced = run(project, aws, "import", "workers.ondemand[2]", foreign, "--force").stdout
    assert "Import successful!" in forced and "was taken from another state" in forced
    assert "No changes." in run(project, aws, "plan").stdout
    run(other, aws, "state", "rm", "workers.ondemand[0]")
    run(other, aws, "destroy", "--auto-approve")
    run(project, aws, "destroy", "--auto-approve")
    assert aws.live_instances() == []


def test_fargate_task_import_by_task_id_and_sweep(project: Project, aws: MotoAws) -> None:
    write_fargate(project, regular=2, spot=0)
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    held = {r["address"]: r for r in project.state("fg")["resources"]}
    arn = held["workers.regular[1]"]["id"]
    task_id = arn.rsplit("/", 1)[-1]
    run(project, aws, "state", "rm", "workers.regular[1]")
    out = run(project, aws, "import", "workers.regular[1]", task_id).stdout  # the short id
    assert "Import successful!" in out
    rec = {r["address"]: r for r in project.state("fg")["resources"]}["workers.regular[1]"]
    assert rec["id"] == arn and rec["meta"]["cluster"] == held["ecs_cluster"]["id"]
    assert "No changes." in run(project, aws, "plan").stdout

    swept_clean(project, aws, "fg")
    ecs = aws.client("ecs")
    cluster = held["ecs_cluster"]["id"]
    assert ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"] == []
    assert ecs.describe_clusters(clusters=[cluster])["clusters"][0]["status"] == "INACTIVE"
    assert aws.client("logs").describe_log_groups(logGroupNamePrefix="/scalable/")[
        "logGroups"] == []
