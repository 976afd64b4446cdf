"""The AWS provider on Fargate, through the real CLI, against a moto server."""

from __future__ import annotations

import json

import pytest
from scalable.pricing.catalog import fargate_rates
from scalable.providers.aws.tags import decode, started_by

from .motoaws import MotoAws

pytestmark = pytest.mark.aws

MANIFEST = """
version: 1
project: {{name: demo}}
targets:
  fg:
    provider: aws
    launch_type: fargate
    region: us-east-1
    cpu: {cpu}
    memory: {memory}
    execution_role: arn:aws:iam::123456789012:role/ecsTaskExecutionRole
    idle_timeout: 20m
    groups:
      regular:
        max_workers: {regular}
      cheap:
        max_workers: {spot}
        spot: fallback
        cpu: 2
        memory: 8GiB
        tags: [gpu-free]
"""


def write(project, *, cpu: str = "1", memory: str = "4GiB", regular: int = 2,
          spot: int = 1) -> None:
    project.write(MANIFEST.format(cpu=cpu, memory=memory, regular=regular, spot=spot))


def run(project, aws: MotoAws, *args: str, check: bool = True):
    return project.run(*args, env=aws.env, check=check)


def records(project) -> dict[str, dict]:
    return {r["address"]: r for r in project.state("fg")["resources"]}


def test_invalid_cpu_memory_pair_fails_at_plan(project, aws: MotoAws) -> None:
    write(project, cpu="1", memory="1GiB")
    proc = project.run("plan", env=aws.env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == ("Error: target fg (scheduler): Fargate has no 1 vCPU task with "
                        "1 GiB of memory")
    assert lines[1] == "  hint: with 1 vCPU, memory must be 2 GiB to 8 GiB in 1 GiB steps"
    write(project, cpu="3")
    proc = project.run("plan", env=aws.env)
    assert "Fargate has no task with 3 vCPU" in proc.stderr and proc.returncode == 1
    assert not (project.root / ".scalable/fg/state.json").exists()


def test_plan_prices_vcpu_and_gb_hours(project, aws: MotoAws) -> None:
    write(project)
    plan = json.loads(run(project, aws, "plan", "--json").stdout)
    r = fargate_rates("us-east-1")
    assert r is not None
    regular = 1 * r["vcpu_hour"] + 4 * r["gb_hour"]
    spot = 2 * r["spot_vcpu_hour"] + 8 * r["spot_gb_hour"]
    # scheduler + 2 regular workers + 1 Fargate Spot worker; cluster, task definitions,
    # log group and security group cost nothing by the hour.
    assert plan["cost"]["hourly_after"] == pytest.approx(3 * regular + spot)
    assert any("Fargate Spot prices are estimates" in n for n in plan["cost"]["notes"])
    types = sorted(c["type"] for c in plan["resource_changes"])
    assert types.count("aws.task_definition") == 3  # scheduler, regular, cheap
    assert types.count("aws.fargate_task") == 4
    assert {"aws.ecs_cluster", "aws.log_group", "aws.security_group"} <= set(types)


def test_apply_runs_tagged_tasks_then_destroy_leaves_nothing(project, aws: MotoAws) -> None:
    write(project)
    out = run(project, aws, "apply", "--auto-approve", "--no-wait").stdout
    assert "Apply complete! Resources: 10 added" in out
    recs = records(project)
    st = project.state("fg")
    lineage = st["lineage"]
    ecs = aws.client("ecs")
    cluster = recs["ecs_cluster"]["id"]
    c = ecs.describe_clusters(clusters=[cluster], include=["TAGS"])["clusters"][0]
    assert c["status"] == "ACTIVE"
    assert {t["key"]: t["value"] for t in c["tags"]}["scalable:lineage"] == lineage

    td = ecs.describe_task_definition(taskDefinition=recs["task_definition.cheap"]["id"])
    td = td["taskDefinition"]
    assert (td["cpu"], td["memory"]) == ("2048", "8192")
    container = td["containerDefinitions"][0]
    assert container["memory"] == 8192  # on the container too (moto needs it)
    assert container["logConfiguration"]["options"]["awslogs-group"] == recs["log_group"]["id"]
    assert td["executionRoleArn"].endswith("role/ecsTaskExecutionRole")
    # The worker's image has no scalable: its task definition carries the preemption
    # preload (gzip + base64), which the worker's command writes out for its nannies.
    from scalable.providers.aws.bootstrap import PREEMPTION_ENV, packed, preemption_source

    td_env = {e["name"]: e["value"] for e in container.get("environment", [])}
    assert td_env[PREEMPTION_ENV] == packed(preemption_source())
    sched_td = ecs.describe_task_definition(
        taskDefinition=recs["task_definition.scheduler"]["id"])["taskDefinition"]
    ports = [p["containerPort"] for p in sched_td["containerDefinitions"][0]["portMappings"]]
    assert ports == [8786, 8787]
    assert PREEMPTION_ENV not in {e["name"] for e in
                                  sched_td["containerDefinitions"][0].get("environment", [])}

    arns = [recs[a]["id"] for a in recs if recs[a]["type"] == "aws.fargate_task"]
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns, include=["TAGS"])["tasks"]
    assert len(tasks) == 4
    sg = recs["security_group"]["id"]
    for t in tasks:
        tags = {x["key"]: decode(x["value"]) for x in t["tags"]}
        rec = recs[tags["scalable:address"]]
        assert not any("[" in x["value"] for x in t["tags"])  # ECS forbids brackets
        assert tags["scalable:key"] == rec["idempotency_key"]
        assert t["startedBy"] == started_by(rec["idempotency_key"])
        override = t["overrides"]["containerOverrides"][0]
        script = override["command"][2]
        env = {e["name"]: e["value"] for e in override["environment"]}
        assert "BEGIN PRIVATE KEY" in env["SCALABLE_TLS_KEY"]  # shipped by env (documented)
        if tags["scalable:address"] == "scheduler":
            assert "--idle-timeout 1200s" in script
        else:
            assert "--death-timeout 300s" in script
            assert '--preload-nanny "${D}/scalable_preemption.py"' in script
            assert f'"${PREEMPTION_ENV}" | base64 -d | gunzip' in script
            assert len(json.dumps(t["overrides"])) < 8192  # RunTask's cap on overrides
            assert env["SCALABLE_SCHEDULER_ADDRESS"] == st["outputs"][
                "scheduler_private_address"]
        if tags["scalable:address"] == "workers.cheap[0]":
            assert t["capacityProviderName"] == "FARGATE_SPOT"
            assert "--resources tag-gpu-free=1" in script
        else:
            assert t.get("capacityProviderName", "FARGATE") == "FARGATE"
        assert t["attachments"][0]["type"] == "ElasticNetworkInterface"
    ip = [d["value"] for d in tasks[0]["attachments"][0]["details"]
          if d["name"] == "privateIPv4Address"]
    assert ip
    sched = [t for t in tasks if t["taskArn"] == recs["scheduler"]["id"]][0]
    sched_ip = [d["value"] for d in sched["attachments"][0]["details"]
                if d["name"] == "privateIPv4Address"][0]
    assert st["outputs"]["scheduler_address"] == f"tls://{sched_ip}:8786"
    assert "PRIVATE KEY" not in (project.root / ".scalable/fg/state.json").read_text()
    assert sg in json.dumps(records(project)["security_group"])

    assert "No changes." in run(project, aws, "plan").stdout

    out = run(project, aws, "destroy", "--auto-approve").stdout
    assert "10 destroyed" in out
    running = ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
    assert running == []
    assert ecs.describe_clusters(clusters=[cluster])["clusters"][0]["status"] == "INACTIVE"
    for addr in ("task_definition.scheduler", "task_definition.regular",
                 "task_definition.cheap"):
        try:  # deregistered, then deleted (DeleteTaskDefinitions)
            status = ecs.describe_task_definition(taskDefinition=recs[addr]["id"])[
                "taskDefinition"]["status"]
        except ecs.exceptions.ClientException:
            status = "gone"
        assert status in ("INACTIVE", "DELETE_IN_PROGRESS", "gone")
    logs = aws.client("logs").describe_log_groups(logGroupNamePrefix="/scalable/")
    assert logs["logGroups"] == []
    groups = aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:scalable:lineage", "Values": [lineage]}])["SecurityGroups"]
    assert groups == []
    assert project.state("fg")["resources"] == []


def test_stopped_task_is_drift_with_the_stop_reason(project, aws: MotoAws) -> None:
    write(project, regular=2, spot=0)
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    rec = records(project)["workers.regular[1]"]
    aws.client("ecs").stop_task(cluster=rec["meta"]["cluster"], task=rec["id"],
                                reason="Spot interruption (test)")
    plan = run(project, aws, "plan").stdout
    assert "workers.regular[1] (aws.fargate_task) is gone: task stopped: Spot interruption" \
        in plan
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    new = records(project)["workers.regular[1]"]
    assert new["id"] != rec["id"]
    ecs = aws.client("ecs")
    running = ecs.list_tasks(cluster=rec["meta"]["cluster"], desiredStatus="RUNNING")
    assert len(running["taskArns"]) == 3  # scheduler + 2 workers, nothing doubled
    run(project, aws, "destroy", "--auto-approve")


def test_orphan_task_from_a_crash_is_deleted(project, aws: MotoAws) -> None:
    """A task started for a create whose record never made it into state."""
    write(project, regular=1, spot=0)
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    recs = records(project)
    lineage = project.state("fg")["lineage"]
    ecs = aws.client("ecs")
    task = ecs.describe_tasks(cluster=recs["ecs_cluster"]["id"],
                              tasks=[recs["workers.regular[0]"]["id"]])["tasks"][0]
    awsvpc = {"subnets": [task["attachments"][0]["details"][0]["value"]],
              "securityGroups": [recs["security_group"]["id"]]}
    orphan = ecs.run_task(
        cluster=recs["ecs_cluster"]["id"], taskDefinition=recs["task_definition.regular"]["id"],
        launchType="FARGATE", networkConfiguration={"awsvpcConfiguration": awsvpc},
        tags=[{"key": "scalable:lineage", "value": lineage},
              {"key": "scalable:address", "value": "workers.regular/5"},
              {"key": "scalable:key", "value": f"{lineage[:8]}-workers.regular/5-0000"}],
    )["tasks"][0]["taskArn"]
    plan = run(project, aws, "plan").stdout
    assert f"{orphan} carries this state's lineage but is not recorded" in plan
    assert "workers.regular[5] will be destroyed" in plan
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    status = ecs.describe_tasks(cluster=recs["ecs_cluster"]["id"], tasks=[orphan])["tasks"][0]
    assert status["lastStatus"] == "STOPPED"
    run(project, aws, "destroy", "--auto-approve")


SHORT = ("Capacity is unavailable at this time. Please try again later or in a different "
         "availability zone")


def _apply_via_proxy(project, aws: MotoAws, proxy):
    return project.run("apply", "--auto-approve", "--no-wait",
                       env={**aws.env, "AWS_ENDPOINT_URL": proxy.url})


def test_fargate_spot_shortfall_falls_back_to_fargate(project, aws: MotoAws) -> None:
    """`spot: fallback`: a FARGATE_SPOT capacity shortfall (RunTask's ``failures``,
    injected by a proxy in front of moto) starts the task on regular Fargate; state
    records what was obtained and why."""
    import json as _json

    from .motoaws import SlowProxy

    write(project, regular=0, spot=1)
    body = _json.dumps({"tasks": [], "failures": [{"arn": "", "reason": SHORT}]})
    proxy = SlowProxy(aws.url, {}, answer={"\"capacityProviderStrategy\"": body})
    try:
        out = _apply_via_proxy(project, aws, proxy)
    finally:
        proxy.close()
    assert out.returncode == 0, out.stdout + out.stderr
    assert proxy.failed  # the Spot request really was refused
    rec = records(project)["workers.cheap[0]"]
    assert rec["meta"]["capacity_provider"] == "FARGATE"
    assert rec["meta"]["failover"] == [f"FARGATE_SPOT: {SHORT}"]
    task = aws.client("ecs").describe_tasks(cluster=rec["meta"]["cluster"],
                                            tasks=[rec["id"]])["tasks"][0]
    assert task.get("capacityProviderName", "FARGATE") == "FARGATE"
    run(project, aws, "destroy", "--auto-approve")


def test_fargate_shortfall_without_fallback_is_a_clear_partial_apply(
        project, aws: MotoAws) -> None:
    import json as _json

    from .motoaws import SlowProxy

    write(project, regular=1, spot=0)
    body = _json.dumps({"tasks": [], "failures": [{"arn": "", "reason": SHORT}]})
    # Every worker task is refused (the scheduler's RunTask names no group's definition).
    proxy = SlowProxy(aws.url, {}, answer={"workers.regular": body})
    try:
        out = _apply_via_proxy(project, aws, proxy)
    finally:
        proxy.close()
    assert out.returncode == 3, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert SHORT in out.stdout + out.stderr
    recs = records(project)
    assert "scheduler" in recs and "workers.regular[0]" not in recs
    run(project, aws, "destroy", "--auto-approve")
