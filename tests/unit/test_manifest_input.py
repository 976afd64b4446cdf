"""Bad manifests answer with one clear error, fast (issue 11, items 12-15, 17, 19)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from scalable.errors import ManifestError
from scalable.manifest import parse_manifest
from scalable.spec import build_target

P = Path("scalable.yaml")


def load(text: str):
    return parse_manifest(textwrap.dedent(text).lstrip(), P)


def refused(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(text)
    return info.value


# -- item 12: alias bombs, cycles, deep nesting -----------------------------------------

LAUGHS = (
    "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    + "targets: {local: {provider: local}}\n"
)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (LAUGHS, "expands to more than 100,000 values"),
        ("x: &a [*a]\n", "alias *a is inside the collection it names"),
        ("x: &a {b: *a}\n", "alias *a is inside the collection it names"),
        ("[" * 5000, "nested deeper than 64 levels"),
        ("{a: " * 5000, "nested deeper than 64 levels"),
        ("- " * 5000 + "x\n", "nested deeper than 64 levels"),
        ("x: " + "y" * (300 * 1024) + "\n", "larger than 256 KiB"),
    ],
    ids=["laughs", "seq-cycle", "map-cycle", "flow-seq", "flow-map", "block-seq", "big"],
)
def test_yaml_bombs_are_refused_with_a_clean_error(text: str, needle: str) -> None:
    err = refused(text)
    assert needle in err.message
    assert err.message.startswith("scalable.yaml")
    assert err.hint


def test_aliases_within_bounds_still_work() -> None:
    m = load(
        """
        common: &w {threads_per_worker: 2, processes: false}
        targets:
          a: {provider: local, max_workers: 1, <<: *w}
          b: {provider: local, max_workers: 2, <<: *w}
        """.replace("common:", "x-common:")
    )
    assert build_target(m, "b").groups[0].threads_per_worker == 2


# -- item 19: $$ escapes ${...} ------------------------------------------------------------


def test_dollar_dollar_is_a_literal_dollar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCT", "GCIMS")
    m = load("""
        targets:
          hpc:
            provider: slurm
            account: ${ACCT}
            job_script_prologue:
              - echo $${SLURM_JOB_ID} $$HOME costs $$5
              - &p echo $${ACCT} ${ACCT}
              - *p
        """)
    cfg = m.manifest.targets["hpc"]
    assert cfg.account == "GCIMS"
    assert cfg.job_script_prologue == [
        "echo ${SLURM_JOB_ID} $HOME costs $5",
        "echo ${ACCT} GCIMS",
        "echo ${ACCT} GCIMS",  # an alias is expanded once, not unescaped twice
    ]


def test_unset_variable_hint_mentions_the_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_UNSET", raising=False)
    err = refused("targets: {local: {provider: local, env: {A: '${NOPE_UNSET}'}}}\n")
    assert "NOPE_UNSET is not set" in err.message and "$$" in (err.hint or "")


# -- item 13: upper bounds, the limit in the error ----------------------------------------


@pytest.mark.parametrize(
    ("provider", "extra", "limit"),
    [
        ("local", "", "512"),
        ("slurm", "", "10,000"),
        ("aws", "", "5,000"),
        ("gke", ", allowed_cidrs: [10.0.0.0/8], cluster: c, location: l", "5,000"),
    ],
)
def test_huge_worker_counts_are_refused_with_the_limit(
    provider: str, extra: str, limit: str
) -> None:
    err = refused(f"targets: {{t: {{provider: {provider}, max_workers: 1000000000000{extra}}}}}\n")
    assert "targets.t.max_workers" in err.message and f"limit of {limit}" in err.message
    adaptive = "groups: {g: {adaptive: {maximum: 99999999}}}"
    err = refused("targets: {t: {provider: " + provider + ", " + adaptive + extra + "}}\n")
    assert "targets.t.groups.g.adaptive" in err.message and f"limit of {limit}" in err.message


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("provider: local, threads_per_worker: 100000", "less than or equal to 1024"),
        ("provider: local, memory_per_worker: 1000PB", "memory_per_worker"),
        ("provider: slurm, processes: 100000", "less than or equal to 256"),
        ("provider: slurm, walltime: 99999999", "walltime"),
        ("provider: slurm, cores: 100000", "less than or equal to 4096"),
        ("provider: aws, launch_type: fargate, cpu: 1000", "less than or equal to 16"),
        ("provider: aws, launch_type: fargate, memory: 10TiB", "memory"),
        ("provider: gke, disk_size_gb: 10000000", "less than or equal to 65536"),
        ("provider: gke, operation_timeout: 100d", "less than or equal to 86400"),
        ("provider: local, max_workers: 1, env: {A: b}, workload: {tasks: 1e30}", "tasks"),
        (
            "provider: local, max_workers: 1, groups: {"
            + ", ".join(f"g{i}: {{}}" for i in range(101))
            + "}",
            "groups",
        ),
    ],
)
def test_sizes_counts_and_durations_have_upper_bounds(body: str, needle: str) -> None:
    err = refused(f"targets: {{t: {{{body}}}}}\n")
    assert needle in err.message, err.message


def test_huge_max_workers_plan_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scalable.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "scalable.yaml").write_text(
        "targets: {local: {provider: local, max_workers: 1000000000000}}\n"
    )
    for command in ("validate", "plan"):
        assert main([command]) == 1
        err = capsys.readouterr().err
        assert err.startswith("Error: scalable.yaml:1:49: targets.local.max_workers: ")
        assert "limit of 512" in err and "bug" not in err


# -- item 14: positive, finite, within range -----------------------------------------------


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("provider: slurm, lifetime_margin: -600", "lifetime_margin"),
        ("provider: slurm, walltime: 10, lifetime_margin: 20m", "lifetime_margin"),
        ("provider: slurm, lifetime_margin: 10m, groups: {g: {walltime: 5}}", "lifetime_margin"),
        ("provider: aws, idle_timeout: -5", "idle_timeout"),
        ("provider: aws, idle_timeout: .inf", "idle_timeout"),
        ("provider: aws, idle_timeout: true", "idle_timeout"),
        ("provider: local, adaptive: {maximum: 3, interval: -1}", "adaptive.interval"),
        ("provider: local, adaptive: {maximum: 3, interval: 0}", "adaptive.interval"),
        ("provider: local, adaptive: {maximum: 3, cooldown: .nan}", "adaptive.cooldown"),
        (
            "provider: local, adaptive: {maximum: 3, target_duration: .inf}",
            "adaptive.target_duration",
        ),
        ("provider: local, memory_per_worker: .inf", "memory_per_worker"),
        ("provider: local, memory_per_worker: .nan", "memory_per_worker"),
        ("provider: local, memory_per_worker: -1", "memory_per_worker"),
        ("provider: local, memory_per_worker: 0", "memory_per_worker"),
        ("provider: local, memory_per_worker: " + "9" * 400 + " GiB", "memory_per_worker"),
        ("provider: local, pricing: {hourly_usd: .inf}", "pricing.hourly_usd"),
        ("provider: local, pricing: {discount: .nan}", "pricing.discount"),
        ("provider: local, objectives: {budget_usd: .nan}", "objectives.budget_usd"),
        ("provider: local, objectives: {deadline_hours: .inf}", "objectives.deadline_hours"),
        ("provider: aws, launch_type: fargate, cpu: .nan", "cpu"),
        ("provider: gke, operation_timeout: -1", "operation_timeout"),
    ],
)
def test_negative_infinite_and_nan_values_are_refused(body: str, key: str) -> None:
    err = refused(f"targets: {{t: {{{body}}}}}\n")
    assert f"targets.t.{key}" in err.message or f"targets.t: {key}" in err.message, err.message


def test_bounds_leave_ordinary_values_alone() -> None:
    m = load(
        """
        targets:
          hpc:
            provider: slurm
            walltime: "2-00:00:00"
            lifetime_margin: 10m
            memory: 64GiB
            adaptive: {maximum: 200, interval: 2s, cooldown: 0}
          aws:
            provider: aws
            idle_timeout: false
          gke:
            provider: gke
            idle_timeout_is_not_here: 1
        """.replace("            idle_timeout_is_not_here: 1\n", "")
    )
    assert m.manifest.targets["hpc"].lifetime_margin == 600


# -- item 15: names full-match; names that collide after a provider's rewriting ------------


@pytest.mark.parametrize(
    "text",
    [
        'targets: {t: {provider: slurm, groups: {"gpu\\n": {max_workers: 1}}}}\n',
        'targets: {"local\\n": {provider: local}}\n',
        'targets: {t: {provider: slurm, queue: "batch\\n#SBATCH --x"}}\n',
        'targets: {t: {provider: slurm, account: "a\\n"}}\n',
        'targets: {t: {provider: slurm, job_extra_directives: ["--x\\n#SBATCH --y"]}}\n',
        'targets: {t: {provider: gke, namespace: "default\\n"}}\n',
        'targets: {t: {provider: aws, instance_type: "m6i.large\\n"}}\n',
        'targets: {t: {provider: local, groups: {"Gpu": {}}}}\n',
    ],
)
def test_names_with_a_trailing_newline_are_refused(text: str) -> None:
    refused(text)


def test_group_names_that_collide_on_gke_are_refused() -> None:
    err = refused("""
        targets:
          g:
            provider: gke
            groups: {gpu_a: {max_workers: 1}, gpu-a: {max_workers: 1}}
        """)
    assert "targets.g.groups" in err.message
    assert "'gpu_a' and 'gpu-a' would both be named 'gpu-a'" in err.message
    # Where names are kept as written, both are fine.
    load("targets: {l: {provider: local, groups: {gpu_a: {}, gpu-a: {}}}}\n")


# -- item 17: validate runs every provider's offline checks --------------------------------


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        (
            "{provider: aws, region: us-east-1, launch_type: fargate, cpu: 3}",
            "Fargate has no task with 3 vCPU",
        ),
        (
            "{provider: aws, region: us-east-1, launch_type: fargate, cpu: 1, memory: 64GiB}",
            "Fargate has no 1 vCPU task with 64",
        ),
        ("{provider: gke, cluster: c, location: us-central1}", "needs allowed_cidrs"),
        ("{provider: gke, allowed_cidrs: [10.0.0.0/8]}", "needs cluster and location"),
        (
            "{provider: gke, cluster: c, location: l, allowed_cidrs: [10.0.0.0/8], "
            "machine_type: e2-nosuch-4}",
            "machine type 'e2-nosuch-4' is unknown",
        ),
        ("{provider: slurm, containers: docker}", "containers: docker is not supported"),
        (
            "{provider: slurm, cores: 2, processes: 2, threads_per_worker: 2}",
            "a job asks for 2 cores",
        ),
    ],
)
def test_validate_refuses_what_plan_refuses_offline(
    target: str,
    needle: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from scalable.cli import main

    monkeypatch.chdir(tmp_path)
    # Nothing may be reached: an endpoint that refuses, no Slurm commands, no Google.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "scalable.yaml").write_text(f"targets: {{t: {target}}}\n")
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert needle in err and "bug" not in err, err
    assert err.startswith("Error: scalable.yaml: targets.t: ")
    assert len(err.strip().splitlines()) <= 2  # Error: … and its hint
