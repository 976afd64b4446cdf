"""The manifest: tutorial examples validate verbatim; every error points and hints."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from scalable.errors import ManifestError
from scalable.manifest import parse_manifest
from scalable.manifest.starter import TARGETS, starter
from scalable.spec import build_target

P = Path("scalable.yaml")


def load(text: str):
    return parse_manifest(textwrap.dedent(text).lstrip(), P)


TUTORIAL = {
    "local": """
        targets:
          local:
            provider: local
            max_workers: 4
            threads_per_worker: 2
            processes: false
            containers: none
        """,
    "hpc": """
        targets:
          hpc:
            provider: slurm
            queue: batch
            account: GCIMS
            walltime: "04:00:00"
            interface: ib0
        """,
    "cloud": """
        targets:
          cloud:
            provider: aws
            adaptive:
              minimum: 1
              maximum: 20
        """,
}


@pytest.mark.parametrize("name", list(TUTORIAL))
def test_tutorial_examples_validate_verbatim(name: str) -> None:
    loaded = load(TUTORIAL[name])
    assert list(loaded.manifest.targets) == [name]
    spec = build_target(loaded, name)
    assert spec.groups[0].name == "default"


def test_local_example_builds_the_expected_group() -> None:
    spec = build_target(load(TUTORIAL["local"]), "local")
    (g,) = spec.groups
    assert (g.count, g.threads_per_worker, g.settings.processes) == (4, 2, False)
    assert spec.tls is False


def test_adaptive_target_starts_at_minimum() -> None:
    spec = build_target(load(TUTORIAL["cloud"]), "cloud")
    (g,) = spec.groups
    assert g.count == 1 and g.maximum == 20
    assert spec.tls is True  # non-local targets default to TLS


@pytest.mark.parametrize(
    ("written", "seconds"),
    [('"04:00:00"', 14400), ("04:00:00", 14400), ("90", 5400), ('"1-12:00:00"', 129600),
     ('"30:00"', 1800), ('"2-6"', 2 * 86400 + 6 * 3600)],
)
def test_walltime_forms(written: str, seconds: int) -> None:
    m = load(f"""
        targets:
          hpc:
            provider: slurm
            walltime: {written}
        """)
    assert m.manifest.targets["hpc"].walltime == seconds  # type: ignore[union-attr]


def test_unquoted_sexagesimal_elsewhere_is_not_mangled() -> None:
    m = load("""
        targets:
          l:
            provider: local
            env: {CLOCK: 10:30}
        """)
    assert m.manifest.targets["l"].env == {"CLOCK": "10:30"}


@pytest.mark.parametrize(("text", "nbytes"), [("4GiB", 4 * 2**30), ("512MiB", 512 * 2**20),
                                              ("4 GB", 4 * 10**9), (1000, 1000)])
def test_sizes(text: object, nbytes: int) -> None:
    m = load(f"""
        targets:
          l:
            provider: local
            memory_per_worker: {text}
        """)
    assert m.manifest.targets["l"].memory_per_worker == nbytes


def test_env_expansion_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NWORKERS", "7")
    monkeypatch.delenv("THREADS", raising=False)
    m = load("""
        targets:
          l:
            provider: local
            max_workers: ${NWORKERS}
            threads_per_worker: ${THREADS:-3}
        """)
    t = m.manifest.targets["l"]
    assert (t.max_workers, t.threads_per_worker) == (7, 3)  # typed after expansion


def err(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(text)
    return info.value


def test_unknown_key_names_line_column_and_suggests() -> None:
    e = err("""
        targets:
          local:
            provider: local
            max_wokers: 4
        """)
    assert str(e).startswith("scalable.yaml:4:5: targets.local.max_wokers: unknown key")
    assert e.hint == "did you mean 'max_workers'?"


def test_unknown_key_in_a_group_suggests_from_the_group_schema() -> None:
    e = err("""
        targets:
          local:
            provider: local
            groups:
              big:
                max_workrs: 3
        """)
    assert "scalable.yaml:6:9: targets.local.groups.big.max_workrs" in str(e)
    assert e.hint == "did you mean 'max_workers'?"


def test_bad_value_points_at_the_value() -> None:
    e = err("""
        targets:
          hpc:
            provider: slurm
            walltime: "4 hours"
        """)
    assert str(e).startswith("scalable.yaml:4:15: targets.hpc.walltime:")
    assert "not a walltime" in str(e)


def test_unknown_provider() -> None:
    e = err("""
        targets:
          x:
            provider: kubernetes
        """)
    assert str(e) == "scalable.yaml:3:15: targets.x.provider: unknown provider 'kubernetes'"
    assert e.hint and "local, slurm, aws, gke" in e.hint


def test_fixed_and_adaptive_together_is_an_error() -> None:
    e = err("""
        targets:
          l:
            provider: local
            max_workers: 2
            adaptive: {maximum: 4}
        """)
    assert "either max_workers" in str(e) and str(e).startswith("scalable.yaml:3:5")


def test_missing_env_var_is_positioned() -> None:
    e = err("""
        targets:
          l:
            provider: local
            max_workers: ${SCALABLE_TEST_UNSET_VAR}
        """)
    assert str(e).startswith("scalable.yaml:4:18: targets.l.max_workers: environment variable")
    assert e.hint and "SCALABLE_TEST_UNSET_VAR:-" in e.hint


def test_duplicate_keys_are_rejected() -> None:
    e = err("""
        targets:
          l:
            provider: local
            max_workers: 2
            max_workers: 3
        """)
    assert "duplicate key (first at line 4)" in str(e) and str(e).startswith("scalable.yaml:5:")


def test_invalid_yaml_is_positioned() -> None:
    e = err("targets:\n  l: [unclosed\n")
    assert str(e).startswith("scalable.yaml:3:1: invalid YAML")


def test_default_target_must_exist() -> None:
    e = err("""
        default_target: nope
        targets:
          l: {provider: local}
        """)
    assert "default_target 'nope' is not a target" in str(e)


def test_groups_inherit_and_override_target_keys() -> None:
    spec = build_target(load("""
        targets:
          hpc:
            provider: slurm
            queue: batch
            walltime: "01:00:00"
            groups:
              big:
                tags: [energy]
                max_workers: 3
                memory: 64GiB
              small:
                tags: [land]
                adaptive: {minimum: 0, maximum: 5}
        """), "hpc")
    assert [g.name for g in spec.groups] == ["big", "small"]  # no default: groups set counts
    big, small = spec.groups
    assert (big.count, big.settings.queue, big.settings.memory) == (3, "batch", 64 * 2**30)
    assert (small.count, small.maximum) == (0, 5)
    assert spec.declared_tags == {"energy": "big", "land": "small"}


@pytest.mark.parametrize("provider", list(TARGETS))
def test_init_starters_validate(provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_ACCOUNT", "abc")
    loaded = parse_manifest(starter(provider, "demo"), P)
    assert loaded.manifest.default_target in loaded.manifest.targets


def test_json_schema_is_complete() -> None:
    from scalable.manifest.schema import manifest_model
    from scalable.registry import provider_names

    doc = json.loads(json.dumps(manifest_model(tuple(provider_names())).model_json_schema()))
    text = json.dumps(doc)
    for key in ("max_workers", "walltime", "launch_type", "machine_type", "allowed_cidrs",
                "job_script_prologue", "objectives", "groups"):
        assert key in text


def test_digest_changes_only_with_the_target() -> None:
    a = load("""
        targets:
          l: {provider: local, max_workers: 2}
          m: {provider: local, max_workers: 2}
        """)
    b = load("""
        targets:
          l: {provider: local, max_workers: 2}
          m: {provider: local, max_workers: 3}
        """)
    assert a.target_digest("l") == b.target_digest("l")
    assert a.target_digest("m") != b.target_digest("m")


def test_manifest_model_is_built_without_pydantic_plugins_and_leaves_the_env_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The assembled model skips pydantic's plugin scan (issue 15) while it is built, and
    the switch is not left set for the processes apply starts afterwards."""
    import os

    import pydantic.plugin._loader as loader
    from scalable.manifest.schema import manifest_model

    seen: list[str | None] = []
    real = loader.get_plugins

    def spy():  # type: ignore[no-untyped-def]
        seen.append(os.environ.get("PYDANTIC_DISABLE_PLUGINS"))
        return real()

    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    monkeypatch.setattr(loader, "get_plugins", spy)
    import pydantic.plugin._schema_validator as sv

    monkeypatch.setattr(sv, "get_plugins", spy, raising=False)
    manifest_model.cache_clear()
    try:
        loaded = parse_manifest(
            "targets:\n  a: {provider: local, max_workers: 1}\n", Path("scalable.yaml")
        )
    finally:
        manifest_model.cache_clear()
    assert loaded.manifest.targets["a"].max_workers == 1
    assert seen and set(seen) == {"1"}  # models were built, each without plugins
    assert "PYDANTIC_DISABLE_PLUGINS" not in os.environ
