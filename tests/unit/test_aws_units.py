"""Unit tests of the AWS provider's pure parts (prices, sizes, tags, scripts, retries).

Where a test needs an AWS answer that moto cannot give (DependencyViolation, spot
capacity shortages), botocore's Stubber plays it for one function.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from scalable.manifest.schema import Pricing
from scalable.pricing.catalog import fargate_rates, machine_catalog
from scalable.providers.aws import bootstrap, fargate, tags
from scalable.providers.aws.ec2 import architecture, observation
from scalable.providers.aws.pricing import ec2_price, fargate_price
from scalable.providers.base import ProviderError

NO_PRICING = Pricing()


# -- prices ------------------------------------------------------------------------------

def test_ec2_on_demand_and_spot_estimate() -> None:
    entry = machine_catalog("aws_ec2").lookup("m6i.large", "us-east-1")
    assert entry is not None and entry.on_demand and entry.spot
    od = ec2_price("m6i.large", "us-east-1", False, NO_PRICING)
    assert od.hourly == entry.on_demand and not od.estimate and od.cores == entry.vcpus
    spot = ec2_price("m6i.large", "us-east-1", True, NO_PRICING)
    assert spot.hourly == entry.spot and spot.estimate
    assert "estimate" in spot.note
    fb = ec2_price("m6i.large", "us-east-1", "fallback", NO_PRICING)
    assert fb.hourly == entry.spot and "falls back" not in fb.note and "on-demand" in fb.note


def test_unknown_is_never_zero() -> None:
    for price in (ec2_price("m6i.large", "ap-south-1", False, NO_PRICING),
                  ec2_price("z9.huge", "us-east-1", False, NO_PRICING),
                  ec2_price("m6i.large", None, False, NO_PRICING),
                  fargate_price(1, 2048, "sa-east-1", False, NO_PRICING)):
        assert price.hourly is None and not price.known and price.note


def test_overrides_win_and_discount_applies() -> None:
    assert ec2_price("z9.huge", "us-east-1", False, Pricing(hourly_usd=1.5)).hourly == 1.5
    od = ec2_price("c5.large", "us-east-1", False, NO_PRICING).hourly
    assert od is not None
    half = ec2_price("c5.large", "us-east-1", False, Pricing(discount=0.5))
    assert half.hourly == pytest.approx(od / 2)


def test_fargate_is_vcpu_hours_plus_gb_hours() -> None:
    r = fargate_rates("eu-central-1")
    assert r is not None
    p = fargate_price(2, 6144, "eu-central-1", False, NO_PRICING)
    assert p.hourly == pytest.approx(2 * r["vcpu_hour"] + 6 * r["gb_hour"])
    s = fargate_price(2, 6144, "eu-central-1", True, NO_PRICING)
    assert s.hourly == pytest.approx(2 * r["spot_vcpu_hour"] + 6 * r["spot_gb_hour"])
    assert s.estimate and "Fargate Spot" in s.note


# -- Fargate sizes -----------------------------------------------------------------------

@pytest.mark.parametrize("cpu,mem", [(0.25, 512), (0.25, 2048), (0.5, 4096), (1, 2048),
                                     (4, 30720), (8, 61440), (16, 122880)])
def test_valid_fargate_sizes(cpu: float, mem: int) -> None:
    fargate.check_size(cpu, mem, "t")


@pytest.mark.parametrize("cpu,mem,hint", [
    (0.25, 1536, "0.5 GiB, 1 GiB, 2 GiB"),
    (1, 1024, "2 GiB to 8 GiB in 1 GiB steps"),
    (8, 18432, "16 GiB to 60 GiB in 4 GiB steps"),
    (3, 8192, "cpu must be one of"),
])
def test_invalid_fargate_sizes_name_the_choices(cpu: float, mem: int, hint: str) -> None:
    with pytest.raises(ProviderError) as err:
        fargate.check_size(cpu, mem, "target x")
    assert hint in (err.value.hint or "")
    assert err.value.message.startswith("target x: Fargate has no")


# -- tags, tokens ------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["workers.default[3]", "ab12cd34-workers.gpu-a[12]-00ff00ff",
                                   "scheduler", "task_definition.io", "/scalable/p/t/ab12"])
def test_tag_encoding_round_trips_and_is_ecs_safe(value: str) -> None:
    enc = tags.encode(value)
    assert "[" not in enc and "]" not in enc
    assert tags.decode(enc) == value


def test_tokens_are_deterministic_and_within_limits() -> None:
    key = "ab12cd34-workers.default[999]-deadbeef"
    assert tags.client_token(key) == tags.client_token(key)
    assert tags.client_token(key) != tags.client_token(key, "-od")
    assert len(tags.client_token(key)) <= 64
    sb = tags.started_by(key)
    assert len(sb) <= 36 and sb.replace("-", "").replace("_", "").isalnum()


# -- scripts -----------------------------------------------------------------------------

def test_shell_quoting_survives_bash() -> None:
    args = ["--name", "workers.default[0]", "it's \"quoted\" $HOME `x`", "@SCHED@",
            ":@DASHBOARD_PORT@"]
    script = 'SCHED="tls://h:1"; DASHBOARD_PORT=99; printf "%s\\n" ' + bootstrap.sh_join(args)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["--name", "workers.default[0]", "it's \"quoted\" $HOME `x`", "tls://h:1",
                   ":99"]


def test_default_image_matches_local_versions() -> None:
    from importlib.metadata import version

    image = bootstrap.default_container_image()
    assert image == (f"ghcr.io/dask/dask:{version('distributed')}-"
                     f"py{sys.version_info.major}.{sys.version_info.minor}")


@pytest.mark.parametrize("itype,arch", [("m7g.large", "arm64"), ("c6gn.xlarge", "arm64"),
                                        ("t4g.small", "arm64"), ("m6i.large", "x86_64"),
                                        ("g4dn.xlarge", "x86_64"), ("c5.large", "x86_64")])
def test_architecture(itype: str, arch: str) -> None:
    assert architecture(itype) == arch


def test_instance_observation() -> None:
    base = {"InstanceId": "i-1", "PrivateIpAddress": "10.0.0.1"}
    assert observation({**base, "State": {"Name": "pending"}}).status == "pending"
    assert observation({**base, "State": {"Name": "running"}}).status == "alive"
    stopped = observation({**base, "State": {"Name": "stopped"},
                           "StateReason": {"Message": "Server.SpotInstanceTermination"}})
    assert stopped.status == "gone" and "SpotInstanceTermination" in stopped.reason
    assert observation(None).status == "gone"


def test_task_observation() -> None:
    assert fargate.observation({"lastStatus": "PROVISIONING"}).status == "pending"
    assert fargate.observation({"lastStatus": "RUNNING"}).status == "alive"
    gone = fargate.observation({"lastStatus": "STOPPED", "stoppedReason": "Essential container "
                                "in task exited"})
    assert gone.status == "gone" and "Essential container" in gone.reason


# -- retries and fallbacks, with botocore's Stubber --------------------------------------

def _ec2():
    import boto3

    return boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x",
                                 region_name="us-east-1").client("ec2")


def test_dependency_violation_is_retried_with_backoff() -> None:
    from botocore.stub import Stubber
    from scalable.providers.aws.network import retry_dependency

    ec2 = _ec2()
    slept: list[float] = []
    with Stubber(ec2) as stub:
        for _ in range(2):
            stub.add_client_error("delete_security_group", "DependencyViolation",
                                  "resource sg-1 has a dependent object")
        stub.add_response("delete_security_group", {})
        retry_dependency(lambda: ec2.delete_security_group(GroupId="sg-1"), "deleting",
                         timeout=60, sleep=slept.append)
        stub.assert_no_pending_responses()
    assert slept == [2.0, 4.0]


def test_dependency_violation_gives_up_with_one_clear_error() -> None:
    from botocore.stub import Stubber
    from scalable.providers.aws.network import retry_dependency

    ec2 = _ec2()
    with Stubber(ec2) as stub:
        stub.add_client_error("delete_security_group", "DependencyViolation", "in use")
        with pytest.raises(ProviderError) as err:
            retry_dependency(lambda: ec2.delete_security_group(GroupId="sg-1"),
                             "deleting sg-1", timeout=0, sleep=lambda _: None)
    assert "DependencyViolation" in err.value.message and "still failing" in err.value.message
    with Stubber(ec2) as stub:
        stub.add_client_error("delete_security_group", "UnauthorizedOperation", "no")
        with pytest.raises(ProviderError) as err:
            retry_dependency(lambda: ec2.delete_security_group(GroupId="sg-1"), "deleting",
                             timeout=60, sleep=lambda _: None)
    assert "UnauthorizedOperation" in err.value.message and "IAM" in (err.value.hint or "")


def test_spot_fallback_launches_on_demand_when_spot_is_short() -> None:
    from botocore.stub import ANY, Stubber
    from scalable.providers.aws.ec2 import Launch, launch_instance

    ec2 = _ec2()
    launch = Launch(image_id="ami-1", instance_type="c5.large", user_data="#!/bin/bash",
                    security_groups=("sg-1",), subnet=None, tags={"scalable:address": "w"},
                    key="k-1", market="fallback")
    instance = {"InstanceId": "i-od", "PrivateIpAddress": "10.0.0.9",
                "State": {"Code": 0, "Name": "pending"}}
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", {"Reservations": []})
        stub.add_client_error("run_instances", "InsufficientInstanceCapacity",
                              "no spot capacity", expected_params={
                                  "ImageId": "ami-1", "InstanceType": "c5.large",
                                  "MinCount": 1, "MaxCount": 1,
                                  "ClientToken": tags.client_token("k-1"), "UserData": ANY,
                                  "InstanceInitiatedShutdownBehavior": "terminate",
                                  "MetadataOptions": ANY, "TagSpecifications": ANY,
                                  "SecurityGroupIds": ["sg-1"],
                                  "InstanceMarketOptions": ANY})
        stub.add_response("run_instances", {"Instances": [instance]}, expected_params={
            "ImageId": "ami-1", "InstanceType": "c5.large", "MinCount": 1, "MaxCount": 1,
            "ClientToken": tags.client_token("k-1", "-od"), "UserData": ANY,
            "InstanceInitiatedShutdownBehavior": "terminate", "MetadataOptions": ANY,
            "TagSpecifications": ANY, "SecurityGroupIds": ["sg-1"]})
        meta = launch_instance(ec2, launch, "us-east-1")
        stub.assert_no_pending_responses()
    assert meta["instance_id"] == "i-od" and meta["market"] == "on-demand"


def test_errors_are_one_line_without_html() -> None:
    from botocore.exceptions import ClientError
    from scalable.providers.aws.session import translate

    exc = ClientError({"Error": {"Code": "", "Message": "<html><body><h1>Internal\nServer"
                                 " Error</h1></body></html>"},
                       "ResponseMetadata": {"HTTPStatusCode": 500}}, "RunInstances")
    err = translate(exc, "starting scheduler")
    assert err.message == "starting scheduler: HTTP 500: Internal Server Error"


# -- the engine's dependency ordering ----------------------------------------------------

def test_engine_waves_follow_depends_on() -> None:
    from scalable.planning.steps import waves

    deps = {"security_group": set(), "scheduler": {"security_group"},
            "workers.a[0]": {"scheduler", "security_group"}, "workers.a[1]": {"scheduler"}}
    order = waves(list(deps), deps)
    assert order == [{"security_group"}, {"scheduler"}, {"workers.a[0]", "workers.a[1]"}]
    assert waves(["workers.a[0]"], deps) == [{"workers.a[0]"}]  # deps outside: satisfied
    cyclic = {"a": {"b"}, "b": {"a"}}
    assert waves(["a", "b"], cyclic) == [{"a", "b"}]


def test_engine_graph_keeps_the_old_rule_for_providers_that_declare_nothing() -> None:
    from scalable.planning.model import Change
    from scalable.planning.steps import dependency_graph
    from scalable.providers.base import ResourceSpec
    from scalable.state.model import StateFile

    def change(addr: str, *deps: str) -> Change:
        return Change(address=addr, action="create", type="t",
                      resource=ResourceSpec(address=addr, type="t", attributes={},
                                            depends_on=deps))

    st = StateFile(target="t", provider="p")
    g = dependency_graph(st, [change("scheduler"), change("workers.x[0]")])
    assert g["workers.x[0]"] == {"scheduler"}
    g = dependency_graph(st, [change("sg"), change("scheduler", "sg"), change("td"),
                              change("workers.x[0]", "scheduler", "td")])
    assert g["sg"] == set()  # the scheduler needs it: no implicit wait on the scheduler
    assert g["td"] == {"scheduler"}  # nobody before the scheduler needs it


# -- laziness and configuration ----------------------------------------------------------

def test_cli_and_provider_import_without_boto3() -> None:
    code = ("import sys, scalable.cli, scalable.providers.aws, scalable.state.s3; "
            "bad = [m for m in ('boto3', 'botocore', 'distributed') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_clients_honour_aws_endpoint_url_and_standard_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scalable.providers.aws.session import AwsSession

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    client = AwsSession("eu-west-1").ec2
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.config.retries["mode"] == "standard"
    assert client.meta.region_name == "eu-west-1"


def test_aws_target_tags_are_not_worker_tags(tmp_path) -> None:
    from scalable.manifest.loader import load_manifest
    from scalable.spec import build_target

    path = tmp_path / "scalable.yaml"
    path.write_text("version: 1\ntargets:\n  c:\n    provider: aws\n    max_workers: 1\n"
                    "    tags: {team: climate}\n    groups:\n      io:\n        tags: [io]\n")
    spec = build_target(load_manifest(path), "c")
    assert {g.name: g.tags for g in spec.groups} == {"default": (), "io": ("io",)}
