"""The shared cache against moto's S3 server: two "machines" (two cache folders), one
bucket. Local first, then remote, then compute; writes go to both."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from scalable import cacheable
from scalable.cache import config
from scalable.cache.planning import count_cached
from scalable.cache.store import CacheWarning

from .motoaws import MotoAws

pytestmark = pytest.mark.aws

RUNS: list[int] = []
BUCKET = "ensemble-cache"
REMOTE = f"s3://{BUCKET}/runs/v1/"


@cacheable(return_type=dict, scenario=int)
def simulate(scenario: int) -> dict:
    RUNS.append(scenario)
    return {"scenario": scenario, "value": scenario * 1.5}


@pytest.fixture
def machines(aws: MotoAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    aws.client("s3").create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("SCALABLE_CACHE_REMOTE", REMOTE)
    monkeypatch.delenv("SCALABLE_SEED", raising=False)
    RUNS.clear()

    def on(name: str) -> Path:
        d = tmp_path / name
        monkeypatch.setenv("SCALABLE_CACHE_DIR", str(d))
        return d

    return on


def objects(aws: MotoAws) -> list[str]:
    resp = aws.client("s3").list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in resp.get("Contents", []))


def test_a_result_computed_on_one_machine_is_a_hit_on_another(machines, aws: MotoAws) -> None:
    a = machines("a")
    assert simulate(1) == {"scenario": 1, "value": 1.5}
    key = simulate.key(1)
    assert objects(aws) == [f"runs/v1/{simulate.name}/{key}"]  # written to both
    assert len([p for p in a.rglob(key)]) == 1

    b = machines("b")
    assert not b.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert simulate(1) == {"scenario": 1, "value": 1.5}  # from the bucket
    assert RUNS == [1]
    assert len(list(b.rglob(key))) == 1  # ...and copied to b's local store
    assert config.current().local.stats()[simulate.name].hits == 1

    # Planning on a third machine counts the bucket's entries.
    machines("c")
    count = count_cached([simulate.call(i) for i in range(4)])
    assert (count.total, count.cached) == (4, 1)


def test_local_first_then_remote(machines, aws: MotoAws) -> None:
    machines("a")
    simulate(2)
    s3 = aws.client("s3")
    s3.delete_object(Bucket=BUCKET, Key=f"runs/v1/{simulate.name}/{simulate.key(2)}")
    assert simulate(2)["scenario"] == 2  # the local entry answers; no remote needed
    assert RUNS == [2]


def test_a_corrupted_remote_entry_is_a_miss_and_a_warning(machines, aws: MotoAws) -> None:
    machines("a")
    simulate(3)
    key = f"runs/v1/{simulate.name}/{simulate.key(3)}"
    s3 = aws.client("s3")
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    body[-5] ^= 0x01
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body))
    machines("b")
    with pytest.warns(CacheWarning, match="corrupt remote cache entry"):
        assert simulate(3)["value"] == 4.5
    assert RUNS == [3, 3]


def test_an_unreachable_remote_slows_a_run_but_never_breaks_it(
    machines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALABLE_CACHE_REMOTE", "s3://no-such-bucket-here/x/")
    machines("a")
    with pytest.warns(CacheWarning):
        assert simulate(4)["scenario"] == 4
    assert simulate(4)["scenario"] == 4  # a local hit
    assert RUNS == [4]
