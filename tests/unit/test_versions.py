"""Which version differences between client, scheduler and workers are fatal."""

from __future__ import annotations

from scalable.versions import compare, fatal


def side(**pk: str) -> dict:
    base = {"python": "3.11.7.final.0", "dask": "2025.1.0", "distributed": "2025.1.0",
            "cloudpickle": "3.1.0", "msgpack": "1.1.0"}
    return {"packages": {**base, **pk}}


def test_rules() -> None:
    assert fatal("python", "3.11.7.final.0", "3.12.1.final.0")
    assert not fatal("python", "3.11.7.final.0", "3.11.9.final.0")
    assert fatal("cloudpickle", "3.1.0", "2.2.1") and not fatal("cloudpickle", "3.1.0", "3.0.0")
    assert fatal("distributed", "2025.1.0", "2025.1.1") and fatal("dask", "2025.1.0", "2024.12.1")
    assert not fatal("msgpack", "1.1.0", "1.0.8")
    assert not fatal("dask", None, "2025.1.0")  # missing on one side: warned, not fatal


def test_compare_names_each_side_and_the_worker() -> None:
    versions = {"client": side(), "scheduler": side(),
                "workers": {"tcp://a:1": side(), "tcp://b:2": side(distributed="2000.1.0",
                                                                   msgpack="1.0.8")}}
    report = compare(versions, {"tcp://a:1": "workers.cpu[0]", "tcp://b:2": "workers.gpu[0]"})
    assert [d.package for d in report.errors] == ["distributed"]
    assert report.errors[0].line() == (
        "distributed: client 2025.1.0, scheduler 2025.1.0, workers 2000.1.0 (workers.gpu[0]), "
        "2025.1.0 (workers.cpu[0])")
    assert [d.package for d in report.warnings] == ["msgpack"]
    assert compare({"client": side(), "scheduler": side(), "workers": {"x": side()}}
                   ).differences == []
