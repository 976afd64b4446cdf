"""Per-group containers on AWS, through the real CLI, against a moto server: EC2 user data
runs each group's image with its binds and env (read back from the launched instance);
Fargate registers one task definition per group with its image and env; binds on
Fargate are refused at plan."""

from __future__ import annotations

import base64
import shlex

import pytest

from .motoaws import MotoAws

pytestmark = pytest.mark.aws

EC2 = """
version: 1
project: {name: demo}
targets:
  cloud:
    provider: aws
    region: us-east-1
    instance_type: m6i.large
    groups:
      post:
        max_workers: 1
      energy:
        max_workers: 1
        tags: [model]
        container:
          runtime: docker
          image: ghcr.io/org/energy:1
          binds: {/mnt/efs/inputs: /data/in, /mnt/efs/out put: /data/out}
          env: {MODEL_NAME: "energy 'v7'; $(reboot)"}
          options: [--shm-size, 1g]
"""

FARGATE = """
version: 1
project: {{name: demo}}
targets:
  fg:
    provider: aws
    launch_type: fargate
    region: us-east-1
    cpu: 1
    memory: 4GiB
    groups:
      post:
        max_workers: 1
      energy:
        max_workers: 1
        container:
          runtime: docker
          image: ghcr.io/org/energy:1
          env: {{MODEL_NAME: energy}}
          {extra}
"""


def user_data(aws: MotoAws, instance_id: str) -> str:
    raw = aws.client("ec2").describe_instance_attribute(
        InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    return base64.b64decode(raw).decode()


def test_ec2_user_data_runs_each_group_in_its_own_image(project, aws: MotoAws) -> None:
    project.write(EC2)
    plan = project.run("plan", env=aws.env, check=True).stdout
    assert "energy: 1 worker(s) [tags: model], docker image ghcr.io/org/energy:1" in plan
    assert "bind /mnt/efs/out put → /data/out" in plan
    project.run("apply", "--auto-approve", "--no-wait", env=aws.env, check=True)
    recs = {r["address"]: r for r in project.state("cloud")["resources"]}
    energy = user_data(aws, recs["workers.energy[0]"]["id"])
    post = user_data(aws, recs["workers.post[0]"]["id"])
    run = next(ln.strip() for ln in energy.splitlines() if ln.strip().startswith("docker run"))
    argv = shlex.split(run)
    image = argv.index("ghcr.io/org/energy:1")
    flags = argv[:image]
    for pair in (["-v", "/mnt/efs/inputs:/data/in"], ["-v", "/mnt/efs/out put:/data/out"],
                 ["-e", "MODEL_NAME=energy 'v7'; $(reboot)"], ["--shm-size", "1g"]):
        assert any(flags[i:i + 2] == pair for i in range(len(flags))), (pair, flags)
    assert argv[image + 1:image + 4] == ["python", "-m", "distributed.cli.dask_worker"]
    # The plain group runs the target's image, without the energy group's flags.
    assert "ghcr.io/org/energy" not in post and "/mnt/efs" not in post
    project.run("destroy", "--auto-approve", env=aws.env, check=True)


def test_fargate_registers_one_task_definition_per_group_image(project, aws: MotoAws) -> None:
    from scalable.providers.aws.bootstrap import PREEMPTION_ENV

    project.write(FARGATE.format(extra=""))
    project.run("apply", "--auto-approve", "--no-wait", env=aws.env, check=True)
    recs = {r["address"]: r for r in project.state("fg")["resources"]}
    ecs = aws.client("ecs")

    def container(address: str) -> dict:
        td = ecs.describe_task_definition(taskDefinition=recs[address]["id"])
        return td["taskDefinition"]["containerDefinitions"][0]

    energy, post = container("task_definition.energy"), container("task_definition.post")
    assert energy["image"] == "ghcr.io/org/energy:1"
    assert {"name": "MODEL_NAME", "value": "energy"} in energy.get("environment", [])
    # A group without a container env has only scalable's own: the preemption preload.
    assert post["image"] != "ghcr.io/org/energy:1"
    assert [e["name"] for e in post.get("environment", [])] == [PREEMPTION_ENV]
    state_text = (project.root / ".scalable/fg/state.json").read_text()
    assert '"container_env": [' in state_text
    project.run("destroy", "--auto-approve", env=aws.env, check=True)


@pytest.mark.parametrize(("extra", "words"), [
    ("binds: {/srv/in: /data/in}", "Fargate tasks have no host paths to bind ('/srv/in')"),
    ("options: [--privileged]", "Fargate takes no container runtime options"),
])
def test_fargate_refuses_binds_and_options_at_plan(project, aws: MotoAws, extra: str,
                                                   words: str) -> None:
    project.write(FARGATE.format(extra=extra))
    out = project.run("plan", env=aws.env)
    assert out.returncode == 1
    assert out.stderr.startswith(f"Error: target fg, group energy: {words}"), out.stderr
    assert "Traceback" not in out.stderr
    assert not (project.root / ".scalable/fg/state.json").exists()
