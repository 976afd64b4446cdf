"""The manifest's ``cache:`` block: validated, and carried to workers as environment."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from scalable.errors import ManifestError
from scalable.manifest import parse_manifest
from scalable.spec import build_target


def target(block: str, provider: str = "local"):
    text = (
        f"targets:\n  t:\n    provider: {provider}\n    max_workers: 1\n    cache:\n"
        + textwrap.indent(textwrap.dedent(block).strip(), " " * 6)
        + "\n"
    )
    return build_target(parse_manifest(text, Path("/proj/scalable.yaml")), "t")


def test_cache_block_becomes_worker_environment() -> None:
    spec = target("""
        directory: shared/cache
        remote: s3://bucket/runs/
        size_limit: 2GiB
        tags: {aggregate: false, simulate: true}
    """)
    assert spec.env["SCALABLE_CACHE_DIR"] == "/proj/shared/cache"
    assert spec.env["SCALABLE_CACHE_REMOTE"] == "s3://bucket/runs/"
    assert spec.env["SCALABLE_CACHE_SIZE_LIMIT"] == str(2 * 1024**3)
    assert spec.env["SCALABLE_CACHE_OFF_TAGS"] == "aggregate"
    assert "SCALABLE_CACHE" not in spec.env


def test_cache_disabled_and_cloud_paths_stay_as_written() -> None:
    spec = target(
        """
        enabled: false
        directory: cache
    """,
        provider="aws",
    )
    assert spec.env["SCALABLE_CACHE"] == "off"
    assert spec.env["SCALABLE_CACHE_DIR"] == "cache"


def test_no_cache_block_adds_nothing() -> None:
    text = "targets:\n  t:\n    provider: local\n    max_workers: 1\n"
    spec = build_target(parse_manifest(text, Path("/p/scalable.yaml")), "t")
    assert not any(k.startswith("SCALABLE_CACHE") for k in spec.env)


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        ("remote: http://x/", "remote"),
        ("size_limit: lots", "size_limit"),
        ("tags: {a: maybe}", "tags"),
        ("directroy: x", "directroy"),
    ],
)
def test_bad_cache_keys_are_positioned_errors(block: str, needle: str) -> None:
    with pytest.raises(ManifestError) as info:
        target(block)
    assert needle in str(info.value) and "scalable.yaml:" in str(info.value)
