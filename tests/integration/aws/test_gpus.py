"""GPU groups on AWS, through the real CLI against a moto server: EC2 GPU instance types
from the catalog (priced, refused when they have no GPUs), the GPU AMI and ``docker run
--gpus all`` read back from what was created; Fargate refuses GPUs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from scalable.pricing.catalog import machine_catalog

from .motoaws import MotoAws

GOLDEN = Path(__file__).parents[2] / "unit" / "golden"

pytestmark = pytest.mark.aws

MANIFEST = """
version: 1
project: {{name: gpus}}
targets:
  cloud:
    provider: aws
    region: us-east-1
    instance_type: m6i.large
    {extra}
    groups:
      cpu: {{max_workers: 1, tags: [cpu]}}
      gpu: {{max_workers: 1, tags: [gpu], gpus: 1, {gpu}}}
"""


def write(project, gpu: str, extra: str = "") -> None:
    project.write(MANIFEST.format(gpu=gpu, extra=extra))


def test_gpu_group_on_a_cpu_instance_type_is_refused_with_types_that_fit(
        project, aws: MotoAws) -> None:
    write(project, "gpu_type: a10g")
    out = project.run("plan", env=aws.env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert ("Error: target cloud, group gpu: instance type m6i.large has no GPUs; "
            "1 A10G GPU(s) fit g5.xlarge (1× A10G, $1.01/h)") in out.stderr
    write(project, "gpu_type: l4, instance_type: g5.xlarge")
    out = project.run("validate", env=aws.env)
    assert out.returncode == 1
    assert "g5.xlarge has A10G GPUs, not L4 (family g6); 1 L4 GPU(s) fit g6.xlarge" in out.stderr


def test_gpu_group_prices_its_instance_and_launches_with_gpus(project, aws: MotoAws) -> None:
    write(project, "gpu_type: a10g, instance_type: g5.xlarge")
    plan = json.loads(project.run("plan", "--json", env=aws.env, check=True).stdout)
    cat = machine_catalog("aws_ec2")
    g5, m6i = cat.lookup("g5.xlarge", "us-east-1"), cat.lookup("m6i.large", "us-east-1")
    assert g5 is not None and m6i is not None and g5.gpus == 1
    # scheduler + cpu worker on m6i.large, the gpu worker on g5.xlarge.
    assert plan["cost"]["hourly_after"] == pytest.approx(2 * m6i.on_demand + g5.on_demand)
    assert plan["cost"]["by_group"] == {"cpu": pytest.approx(m6i.on_demand),
                                        "gpu": pytest.approx(g5.on_demand)}
    gpu_change = next(c for c in plan["resource_changes"] if c["address"] == "workers.gpu[0]")
    assert gpu_change["after"]["gpus"] == 1 and gpu_change["after"]["gpu_type"] == "a10g"
    text = project.run("plan", env=aws.env, check=True).stdout
    block = text[text.index("Cost estimate:"):]
    golden = GOLDEN / "plan_cost_gpu_groups.txt"
    if not golden.exists():  # first run writes it; review it by eye, then commit
        golden.write_text(block)
    assert block == golden.read_text()

    project.run("apply", "--auto-approve", "--no-wait", env=aws.env, check=True)
    lineage = project.state("cloud")["lineage"]
    ec2 = aws.client("ec2")
    live = {next(t["Value"] for t in i["Tags"] if t["Key"] == "scalable:address"): i
            for i in aws.live_instances(lineage)}
    gpu, cpu = live["workers.gpu[0]"], live["workers.cpu[0]"]
    assert gpu["InstanceType"] == "g5.xlarge" and cpu["InstanceType"] == "m6i.large"

    def user_data(inst: dict) -> str:
        raw = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"],
                                              Attribute="userData")["UserData"]["Value"]
        return base64.b64decode(raw).decode()

    gpu_script, cpu_script = user_data(gpu), user_data(cpu)
    assert "docker run --rm --network host --name scalable-dask --gpus all " in gpu_script
    assert "GPU=1" in gpu_script and "tag-gpu=1" in gpu_script
    assert "--gpus all" not in cpu_script and "GPU=" not in cpu_script
    names = {i["ImageId"]: i["Name"] for i in ec2.describe_images(
        ImageIds=[gpu["ImageId"], cpu["ImageId"]])["Images"]}
    assert "ecs-gpu-hvm" in names[gpu["ImageId"]]
    assert "ecs-gpu-hvm" not in names[cpu["ImageId"]]
    project.run("destroy", "--auto-approve", env=aws.env, check=True)


def test_fargate_refuses_gpus(project, aws: MotoAws) -> None:
    write(project, "cpu: 1", extra="launch_type: fargate")
    out = project.run("plan", env=aws.env)
    assert out.returncode == 1
    assert "Error: target cloud, group gpu: Fargate has no GPUs (gpus: 1)" in out.stderr
