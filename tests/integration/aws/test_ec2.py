"""The AWS provider on EC2, through the real CLI, against a moto server."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from scalable.pricing.catalog import machine_catalog
from scalable.providers.aws.tags import client_token

from .motoaws import MotoAws, SlowProxy

pytestmark = pytest.mark.aws

MANIFEST = """
version: 1
project: {{name: demo}}
targets:
  cloud:
    provider: aws
    region: us-east-1
    instance_type: m6i.large
    {extra}
    groups:
      ondemand:
        max_workers: {ondemand}
      cheap:
        max_workers: {spot}
        spot: true
        instance_type: c5.xlarge
"""


def write(project, ondemand: int = 2, spot: int = 1, extra: str = "") -> None:
    project.write(MANIFEST.format(ondemand=ondemand, spot=spot, extra=extra))


def run(project, aws: MotoAws, *args: str, check: bool = True):
    return project.run(*args, env=aws.env, check=check)


def state(project) -> dict:
    return project.state("cloud")


def by_address(instances: list[dict]) -> Counter:
    return Counter(
        {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("scalable:address")
        for i in instances
    )


def test_plan_prices_from_the_catalog_and_labels_spot(project, aws: MotoAws) -> None:
    write(project)
    out = run(project, aws, "plan", "--json").stdout
    plan = json.loads(out)
    cat = machine_catalog("aws_ec2")
    od = cat.lookup("m6i.large", "us-east-1").on_demand
    spot = cat.lookup("c5.xlarge", "us-east-1").spot
    # scheduler (always on-demand) + 2 on-demand workers + 1 spot worker; the SG is free.
    assert plan["cost"]["hourly_after"] == pytest.approx(3 * od + spot)
    assert any("spot prices are estimates" in n for n in plan["cost"]["notes"])
    counts = Counter(c["type"] for c in plan["resource_changes"])
    assert counts == {"aws.ec2_instance": 4, "aws.security_group": 1}
    text = run(project, aws, "plan").stdout
    assert "Plan: 5 to add, 0 to change, 0 to destroy." in text
    assert f"${3 * od + spot:.2f}/hour after" in text


def test_unknown_price_is_unknown_not_zero(project, aws: MotoAws) -> None:
    project.write("""
        version: 1
        targets:
          cloud:
            provider: aws
            region: ap-south-1
            instance_type: m6i.large
            max_workers: 1
    """)
    plan = json.loads(run(project, aws, "plan", "--json").stdout)
    assert plan["cost"]["hourly_after"] is None
    assert any("not in the EC2 catalog" in u for u in plan["cost"]["unknown"])
    text = run(project, aws, "plan").stdout
    assert "unknown" in text and "(not counted as $0)" in text


def test_apply_tags_tokens_user_data_and_ingress(project, aws: MotoAws) -> None:
    write(project)
    out = run(project, aws, "apply", "--auto-approve", "--no-wait").stdout
    assert "Apply complete! Resources: 5 added" in out
    st = state(project)
    lineage = st["lineage"]
    live = aws.live_instances(lineage)
    assert by_address(live) == {"scheduler": 1, "workers.ondemand[0]": 1,
                                "workers.ondemand[1]": 1, "workers.cheap[0]": 1}
    ec2 = aws.client("ec2")
    records = {r["address"]: r for r in st["resources"]}
    for inst in live:
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        rec = records[tags["scalable:address"]]
        assert rec["id"] == inst["InstanceId"]
        assert tags["scalable:lineage"] == lineage
        assert tags["scalable:target"] == "cloud"
        assert tags["scalable:key"] == rec["idempotency_key"]
        assert inst["ClientToken"] == client_token(rec["idempotency_key"])
        attr = ec2.describe_instance_attribute(
            InstanceId=inst["InstanceId"], Attribute="instanceInitiatedShutdownBehavior")
        assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
        raw = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"],
                                              Attribute="userData")["UserData"]["Value"]
        script = base64.b64decode(raw).decode()
        assert "pip install" not in script and "shutdown -h now" in script
        if tags["scalable:address"] == "scheduler":
            assert "--idle-timeout 3600s" in script and "dask_scheduler" in script
        else:
            assert "--death-timeout 300s" in script
            assert st["outputs"]["scheduler_private_address"] in script
    # Private keys never reach state: only paths.
    text = (project.root / ".scalable/cloud/state.json").read_text()
    assert "PRIVATE KEY" not in text
    assert st["outputs"]["scheduler_address"].startswith("tls://")
    assert st["outputs"]["tls_client_key"].endswith("client-key.pem")

    sg_id = records["security_group"]["id"]
    group = ec2.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"][0]
    vpc = ec2.describe_vpcs(VpcIds=[group["VpcId"]])["Vpcs"][0]
    cidrs = [r["CidrIp"] for p in group["IpPermissions"] for r in p.get("IpRanges", [])]
    assert cidrs == [vpc["CidrBlock"]]  # the VPC only, never 0.0.0.0/0 by default
    assert any(pair["GroupId"] == sg_id for p in group["IpPermissions"]
               for pair in p.get("UserIdGroupPairs", []))
    assert all(sg_id in [g["GroupId"] for g in i["SecurityGroups"]] for i in live)
    spot = [i for i in live if i.get("InstanceLifecycle") == "spot"]
    assert by_address(spot) == {"workers.cheap[0]": 1}

    again = run(project, aws, "plan")
    assert "No changes." in again.stdout


def test_allowed_cidrs_update_in_place(project, aws: MotoAws) -> None:
    write(project, ondemand=1, spot=0)
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    sg_id = {r["address"]: r for r in state(project)["resources"]}["security_group"]["id"]
    write(project, ondemand=1, spot=0, extra="allowed_cidrs: [203.0.113.0/24]")
    plan = run(project, aws, "plan").stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    group = aws.client("ec2").describe_security_groups(GroupIds=[sg_id])["SecurityGroups"][0]
    cidrs = sorted(r["CidrIp"] for p in group["IpPermissions"] for r in p.get("IpRanges", []))
    assert cidrs == ["203.0.113.0/24"]
    ports = {(p["FromPort"], p["ToPort"]) for p in group["IpPermissions"] if p.get("IpRanges")}
    assert ports == {(8786, 8787)}


def test_drift_terminated_behind_our_back_is_recreated(project, aws: MotoAws) -> None:
    write(project, ondemand=2, spot=0)
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    rec = {r["address"]: r for r in state(project)["resources"]}["workers.ondemand[1]"]
    aws.client("ec2").terminate_instances(InstanceIds=[rec["id"]])
    plan = run(project, aws, "plan")
    assert "workers.ondemand[1] (aws.ec2_instance) is gone: instance terminated" in plan.stdout
    assert "User initiated" in plan.stdout  # AWS's own state reason
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan.stdout
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    new = {r["address"]: r for r in state(project)["resources"]}["workers.ondemand[1]"]
    assert new["id"] != rec["id"]
    live = aws.live_instances(state(project)["lineage"])
    assert by_address(live) == {"scheduler": 1, "workers.ondemand[0]": 1,
                                "workers.ondemand[1]": 1}


def test_destroy_leaves_nothing_tagged(project, aws: MotoAws) -> None:
    write(project)
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    lineage = state(project)["lineage"]
    out = run(project, aws, "destroy", "--auto-approve").stdout
    assert "Destroy complete! Resources: 0 added, 0 changed, 5 destroyed." in out
    # Workers first, then the scheduler, then the security group it stood on.
    order = [ln.split(":")[0] for ln in out.splitlines() if ln.endswith("Destruction complete")]
    assert order.index("scheduler") > max(order.index(a) for a in order if a.startswith("work"))
    assert order[-1] == "security_group"
    assert aws.live_instances(lineage) == []
    groups = aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:scalable:lineage", "Values": [lineage]}])["SecurityGroups"]
    assert groups == []
    assert state(project)["resources"] == []


def _wait_for(pred, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def test_kill_dash_nine_mid_apply_then_apply_converges(project, aws: MotoAws) -> None:
    write(project, ondemand=12, spot=0)
    path = project.root / ".scalable/cloud/state.json"
    run(project, aws, "apply", "--auto-approve", "--no-wait")  # 13 instances, recorded
    write(project, ondemand=20, spot=0)
    # RunInstances answers come 5 s late through this proxy: instances exist at once,
    # the apply cannot record them until the answers arrive — and it is killed before.
    proxy = SlowProxy(aws.url, {"RunInstances": 5.0})
    lineage = state(project)["lineage"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalable", "apply", "--auto-approve", "--no-wait"],
        cwd=project.root, env={**os.environ, **aws.env, "CI": "1",
                               "AWS_ENDPOINT_URL": proxy.url},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def new_instances_launched() -> bool:
        return len(aws.live_instances(lineage)) >= 13 + 4

    try:
        _wait_for(new_instances_launched, timeout=120)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proxy.close()
    assert proc.returncode == -signal.SIGKILL
    st = state(project)
    creating = {r["address"] for r in st["resources"] if r["status"] == "creating"}
    assert creating == {f"workers.ondemand[{i}]" for i in range(12, 20)}
    started = {i["InstanceId"] for i in aws.live_instances(lineage)}
    recorded = {r["id"] for r in st["resources"] if r["id"]}
    untracked = started - recorded
    assert len(untracked) >= 4  # launched by the killed apply, never recorded

    plan = run(project, aws, "plan").stdout
    assert plan.count("adopted: created by an interrupted apply") == len(untracked)
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    live = aws.live_instances(lineage)
    want = {"scheduler": 1, **{f"workers.ondemand[{i}]": 1 for i in range(20)}}
    assert by_address(live) == want  # nothing doubled, nothing missing
    assert untracked <= {i["InstanceId"] for i in live}  # adopted, not replaced
    assert {r["status"] for r in state(project)["resources"]} == {"ready"}
    assert path.exists()

    run(project, aws, "destroy", "--auto-approve")
    assert aws.live_instances(lineage) == []


def test_kill_dash_nine_then_destroy_leaves_nothing(project, aws: MotoAws) -> None:
    """Killed mid-apply, then destroyed straight away: the unrecorded instances go too."""
    write(project, ondemand=6, spot=0)
    proxy = SlowProxy(aws.url, {"RunInstances": 5.0})
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalable", "apply", "--auto-approve", "--no-wait"],
        cwd=project.root, env={**os.environ, **aws.env, "CI": "1",
                               "AWS_ENDPOINT_URL": proxy.url},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: len(aws.live_instances()) >= 1, timeout=120)  # the scheduler
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proxy.close()
    st = state(project)
    assert [r["status"] for r in st["resources"] if r["address"] == "scheduler"] == ["creating"]
    out = run(project, aws, "destroy", "--auto-approve").stdout
    assert "Destroy complete!" in out
    assert aws.live_instances() == []
    groups = aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:scalable:lineage", "Values": [st["lineage"]]}])["SecurityGroups"]
    assert groups == []


def test_crash_leftovers_are_adopted_or_deleted(project, aws: MotoAws) -> None:
    """Deterministic version of the crash: a write-ahead record whose instance exists
    untracked, one that never got created, and an orphan the state never heard of."""
    write(project, ondemand=2, spot=0)
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    path = project.root / ".scalable/cloud/state.json"
    st = json.loads(path.read_text())
    lineage = st["lineage"]
    recs = {r["address"]: r for r in st["resources"]}
    # workers.ondemand[0]: the instance exists, but the state still says `creating`.
    recs["workers.ondemand[0]"].update(status="creating", id=None, meta={})
    # workers.ondemand[1]: recorded `creating`, never created; its old instance is gone.
    aws.client("ec2").terminate_instances(InstanceIds=[recs["workers.ondemand[1]"]["id"]])
    recs["workers.ondemand[1]"].update(status="creating", id=None, meta={},
                                       idempotency_key=f"{lineage[:8]}-never")
    path.write_text(json.dumps(st))
    # An orphan: tagged with this lineage, not in state (as if created then crashed).
    ami = aws.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    orphan = aws.client("ec2").run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, InstanceType="m6i.large",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "scalable:lineage", "Value": lineage},
            {"Key": "scalable:address", "Value": "workers.ondemand[7]"},
            {"Key": "scalable:key", "Value": f"{lineage[:8]}-orphan"}]}],
    )["Instances"][0]["InstanceId"]

    plan = run(project, aws, "plan").stdout
    assert "workers.ondemand[0] (aws.ec2_instance) adopted" in plan
    assert "workers.ondemand[1] (aws.ec2_instance) is gone" in plan
    assert f"{orphan} carries this state's lineage but is not recorded" in plan
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in plan
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    live = aws.live_instances(lineage)
    assert orphan not in {i["InstanceId"] for i in live}
    assert by_address(live) == {"scheduler": 1, "workers.ondemand[0]": 1,
                                "workers.ondemand[1]": 1}


def test_missing_credentials_and_region_are_one_clear_error(project, aws: MotoAws,
                                                           tmp_path: Path) -> None:
    write(project, ondemand=1, spot=0)
    env = {**aws.env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_CONFIG_FILE": str(tmp_path / "none")}
    proc = project.run("plan", env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: no AWS credentials found"), proc.stderr
    assert "hint:" in proc.stderr and "Traceback" not in proc.stderr
    project.write("""
        version: 1
        targets:
          cloud:
            provider: aws
            max_workers: 1
    """)
    proc = project.run("plan", env={**aws.env, "AWS_DEFAULT_REGION": "",
                                    "AWS_CONFIG_FILE": str(tmp_path / "none")})
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: no AWS region"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_instance_type_fails_at_plan(project, aws: MotoAws) -> None:
    write(project, ondemand=1, spot=0, extra="")
    project.write((project.root / "scalable.yaml").read_text().replace(
        "instance_type: m6i.large", "instance_type: m6i.gigantic"))
    proc = project.run("plan", env=aws.env)
    assert proc.returncode == 1
    assert "unknown instance type" in proc.stderr and "Traceback" not in proc.stderr


def test_aws_tags_change_in_place(project, aws: MotoAws) -> None:
    write(project, ondemand=1, spot=0, extra="tags: {team: a, old: x}")
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    before = {r["address"]: r["id"] for r in state(project)["resources"]}
    write(project, ondemand=1, spot=0, extra="tags: {team: b}")
    plan = run(project, aws, "plan").stdout
    assert "Plan: 0 to add, 3 to change, 0 to destroy." in plan
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    after = {r["address"]: r["id"] for r in state(project)["resources"]}
    assert after == before  # nothing replaced
    for inst in aws.live_instances(state(project)["lineage"]):
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert tags["team"] == "b" and "old" not in tags
        assert tags["scalable:managed-by"] == "scalable"  # ours untouched
    assert "No changes." in run(project, aws, "plan").stdout


FAILOVER = """
version: 1
project: {name: demo}
targets:
  cloud:
    provider: aws
    region: us-east-1
    instance_type: m5.large
    groups:
      burst:
        max_workers: 1
        instance_types: [c5.2xlarge, c5.xlarge, m5.xlarge]
"""


def _apply_via(project, aws: MotoAws, proxy: SlowProxy) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scalable", "apply", "--auto-approve", "--no-wait"],
        cwd=project.root, env={**os.environ, **aws.env, "CI": "1", "AWS_ENDPOINT_URL": proxy.url},
        capture_output=True, text=True, timeout=300)


def test_capacity_failover_across_instance_types(project, aws: MotoAws) -> None:
    project.write(FAILOVER)
    plan = run(project, aws, "plan").stdout
    assert "c5.2xlarge" in plan  # the first choice is what is priced
    proxy = SlowProxy(aws.url, {}, fail={"InstanceType=c5.2xlarge": "InsufficientInstanceCapacity"})
    try:
        out = _apply_via(project, aws, proxy)
    finally:
        proxy.close()
    assert out.returncode == 0, out.stdout + out.stderr
    assert proxy.failed  # the first choice really was refused
    rec = next(r for r in state(project)["resources"] if r["address"] == "workers.burst[0]")
    assert rec["meta"]["instance_type"] == "c5.xlarge"  # what was obtained
    assert rec["meta"]["failover"] == ["c5.2xlarge: InsufficientInstanceCapacity"]
    live = [i for i in aws.live_instances(state(project)["lineage"])
            if by_address([i]) == Counter({"workers.burst[0]": 1})]
    assert [i["InstanceType"] for i in live] == ["c5.xlarge"]


def test_capacity_failover_exhausted_is_one_clear_error_and_keeps_what_was_made(
        project, aws: MotoAws) -> None:
    project.write(FAILOVER)
    short = "InsufficientInstanceCapacity"
    proxy = SlowProxy(aws.url, {}, fail={f"InstanceType={t}": short
                                         for t in ("c5.2xlarge", "c5.xlarge", "m5.xlarge")})
    try:
        out = _apply_via(project, aws, proxy)
    finally:
        proxy.close()
    assert out.returncode == 3  # partial: what was created is kept
    assert "Traceback" not in out.stderr
    assert ("in any of its instance_types (c5.2xlarge: InsufficientInstanceCapacity; "
            "c5.xlarge: InsufficientInstanceCapacity; m5.xlarge: InsufficientInstanceCapacity)"
            ) in out.stdout + out.stderr
    addresses = {r["address"] for r in state(project)["resources"]}
    assert "scheduler" in addresses and "workers.burst[0]" not in addresses


def test_instance_types_of_two_architectures_fail_at_plan(project, aws: MotoAws) -> None:
    project.write(FAILOVER.replace("m5.xlarge]", "m6g.xlarge]"))
    out = run(project, aws, "plan", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "group burst's instance_types mix architectures (arm64, x86_64)" in out.stderr


def test_state_rm_forgets_an_instance_for_good(project, aws: MotoAws) -> None:
    """Terraform's meaning: after ``state rm`` the instance is never touched again,
    though it carries the state's lineage tag (issue 11, item 6)."""
    write(project, ondemand=2, spot=0)
    run(project, aws, "apply", "--auto-approve", "--no-wait")
    lineage = state(project)["lineage"]
    kept = {r["address"]: r for r in state(project)["resources"]}["workers.ondemand[1]"]
    run(project, aws, "state", "rm", "workers.ondemand[1]")
    assert [f["id"] for f in state(project)["forgotten"]] == [kept["id"]]
    plan = run(project, aws, "plan").stdout
    assert "orphan" not in plan and "Plan: 1 to add, 0 to change, 0 to destroy." in plan
    out = run(project, aws, "destroy", "--auto-approve").stdout
    assert "Destroy complete! Resources: 0 added, 0 changed, 3 destroyed." in out
    live = aws.live_instances(lineage)
    assert [i["InstanceId"] for i in live] == [kept["id"]]  # still running, untouched
    aws.client("ec2").terminate_instances(InstanceIds=[kept["id"]])


def _two_zones(aws: MotoAws) -> tuple[str, str]:
    """Two default subnets of moto's default VPC, in different zones."""
    subnets = aws.client("ec2").describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in subnets}
    zones = sorted(by_zone)[:2]
    return by_zone[zones[0]], by_zone[zones[1]]


ZONES = """
version: 1
project: {{name: demo}}
targets:
  cloud:
    provider: aws
    region: us-east-1
    instance_type: m5.large
    subnets: [{a}, {b}]
    groups:
      burst:
        max_workers: 1
        instance_types: [c5.2xlarge, c5.xlarge]
"""


def test_capacity_failover_across_subnets(project, aws: MotoAws) -> None:
    """workers.burst[0] is placed in the second subnet; that zone has no capacity, so the
    same (preferred) type is tried in the first subnet before any other type."""
    a, b = _two_zones(aws)
    project.write(ZONES.format(a=a, b=b))
    proxy = SlowProxy(aws.url, {}, fail={f"SubnetId={b}": "InsufficientInstanceCapacity"})
    try:
        out = _apply_via(project, aws, proxy)
    finally:
        proxy.close()
    assert out.returncode == 0, out.stdout + out.stderr
    assert proxy.failed
    rec = next(r for r in state(project)["resources"] if r["address"] == "workers.burst[0]")
    assert rec["meta"]["instance_type"] == "c5.2xlarge" and rec["meta"]["subnet"] == a
    assert rec["meta"]["failover"] == [f"c5.2xlarge in {b}: InsufficientInstanceCapacity"]
    live = [i for i in aws.live_instances(state(project)["lineage"])
            if by_address([i]) == Counter({"workers.burst[0]": 1})]
    assert [(i["InstanceType"], i["SubnetId"]) for i in live] == [("c5.2xlarge", a)]


def test_capacity_failover_across_subnets_and_types_exhausted(project, aws: MotoAws) -> None:
    a, b = _two_zones(aws)
    project.write(ZONES.format(a=a, b=b))
    short = "InsufficientInstanceCapacity"
    # The scheduler (first subnet, m5.large) starts; every worker choice is refused.
    proxy = SlowProxy(aws.url, {}, fail={f"InstanceType={t}": short
                                         for t in ("c5.2xlarge", "c5.xlarge")})
    try:
        out = _apply_via(project, aws, proxy)
    finally:
        proxy.close()
    assert out.returncode == 3, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert (f"in any of its instance_types and subnets (c5.2xlarge in {b}: {short}; "
            f"c5.2xlarge in {a}: {short}; c5.xlarge in {b}: {short}; c5.xlarge in {a}: "
            f"{short})") in out.stdout + out.stderr
    addresses = {r["address"] for r in state(project)["resources"]}
    assert "scheduler" in addresses and "workers.burst[0]" not in addresses
