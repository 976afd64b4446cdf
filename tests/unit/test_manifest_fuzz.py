"""Manifest fuzzing: whatever the file says, `validate` and `plan` answer with exit 0, or
exit 1 and one ``Error:`` line. Never a traceback, never "this is a bug" (issue 11).

Three sources: valid manifests of every provider with one key, type or value changed;
random YAML documents; random YAML-ish text. In process (click's CliRunner) for speed:
``validate`` for every provider (offline by design), ``plan`` for local targets (no
network, no processes: a plan only reads). The ``ci`` profile runs 2,200 cases.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scalable.cli import app


def invoke(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the CLI in process, as the real entry point runs it
    (``ScalableGroup.main``: every outcome is an exit code; an exception escaping it is
    the failure this test looks for)."""
    with CliRunner().isolation(env=OFFLINE) as (out, err, _mixed):
        try:
            code = app.main(args=args, prog_name="scalable", standalone_mode=False)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        return (
            code,
            out.getvalue().decode(errors="replace"),
            err.getvalue().decode(errors="replace"),
        )


# Offline everywhere: endpoints that refuse, no Slurm or cloud commands on PATH.
OFFLINE = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "PATH": "/nonexistent",
    "CI": "1",
    "NO_COLOR": "1",
    "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "x",
}
# Each test's share of the profile's max_examples (ci: 1000 → 1000 + 600 + 600 = 2,200).
SHARE = {"mutated_local": 1.0, "mutated_any": 0.6, "random": 0.6}

VALID: dict[str, dict[str, Any]] = {
    "local": {
        "provider": "local",
        "max_workers": 2,
        "threads_per_worker": 2,
        "processes": False,
        "memory_per_worker": "1GiB",
        "groups": {
            "big": {"max_workers": 1, "tags": ["big"], "processes": True},
            "auto": {"adaptive": {"minimum": 0, "maximum": 3, "interval": "2s", "cooldown": "30s"}},
        },
        "pricing": {"hourly_usd": 0.1},
        "objectives": {"deadline_hours": 2},
        "workload": {"tasks": 100, "task_seconds": 1.5},
        "env": {"A": "b"},
    },
    "slurm": {
        "provider": "slurm",
        "queue": "batch",
        "account": "acct",
        "walltime": "01:00:00",
        "cores": 4,
        "memory": "8GiB",
        "processes": 2,
        "max_workers": 2,
        "lifetime_margin": "5m",
        "job_script_prologue": ["echo $${SLURM_JOB_ID}"],
        "job_extra_directives": ["--exclusive"],
        "groups": {"gpu": {"max_workers": 1, "job_extra_directives": ["--gres=gpu:1"]}},
    },
    "aws": {
        "provider": "aws",
        "region": "us-east-1",
        "launch_type": "fargate",
        "cpu": 1,
        "memory": "4GiB",
        "adaptive": {"minimum": 0, "maximum": 4},
        "allowed_cidrs": ["10.0.0.0/16"],
        "tags": {"team": "x"},
        "idle_timeout": "1h",
    },
    "gke": {
        "provider": "gke",
        "project": "p",
        "location": "us-central1",
        "cluster": "c",
        "machine_type": "e2-standard-4",
        "max_workers": 2,
        "allowed_cidrs": ["203.0.113.7/32"],
        "groups": {"gpu-a": {"max_workers": 1}},
    },
}

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**12, -600]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            " ",
            "\n",
            "gpu\n",
            "a" * 5000,
            "${NOPE_UNSET}",
            "$${X}",
            "${X:-1}",
            "4GiB",
            "-1GiB",
            "1e400",
            "30s",
            "-5s",
            "04:00:00",
            "0.0.0.0/0",
            "not a cidr",
            "local",
            "slurm",
            "aws",
            "gke",
            "tiny",
            "default",
            "gpu_a",
            "gpu-a",
            "ec2",
            "fargate",
            "docker",
            "apptainer",
            "fallback",
            ".nan",
            ".inf",
        ]
    ),
    st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "max_workers",
            "adaptive",
            "maximum",
            "minimum",
            "interval",
            "cooldown",
            "groups",
            "provider",
            "processes",
            "walltime",
            "memory",
            "cpu",
            "tags",
            "env",
            "pricing",
            "objectives",
            "workload",
            "idle_timeout",
            "targets",
            "default_target",
            "state",
            "backend",
            "bucket",
            "tls",
            "containers",
            "image",
            "allowed_cidrs",
            "lifetime_margin",
            "version",
            "project",
            "name",
            "x-common",
            "max_wokers",
        ]
    ),
    st.text(max_size=10),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw: st.DrawFn, providers: list[str]) -> dict[str, Any]:
    """A valid manifest with one key removed or added, or one value's type or value
    changed."""
    provider = draw(st.sampled_from(providers))
    doc: dict[str, Any] = {
        "version": 1,
        "project": {"name": "fuzz"},
        "targets": {"t": copy.deepcopy(VALID[provider])},
    }
    path = draw(st.sampled_from(list(_paths(doc))))
    parent: Any = doc
    for part in path[:-1]:
        parent = parent[part]
    how = draw(st.sampled_from(["delete", "add", "replace", "replace"]))
    if not path:
        return doc if how == "delete" else {"targets": draw(VALUES)}
    last = path[-1]
    if how == "delete":
        del parent[last]
    elif how == "add" and isinstance(parent, dict):
        parent[draw(KEYS)] = draw(VALUES)
    else:
        parent[last] = draw(VALUES)
    return doc


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _dump(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, ValueError, RecursionError):
        return "targets: {}\n"


def check(workdir: Path, text: str, commands: tuple[str, ...]) -> None:
    path = workdir / "scalable.yaml"
    path.write_text(text, errors="surrogatepass")
    for command in commands:
        code, out, err = invoke([command, "-f", str(path)])
        where = f"`scalable {command}` on:\n{text[:2000]}\n→ {(out + err)[-2000:]}"
        assert code in (0, 1), where
        assert "this is a bug" not in out + err and "Traceback" not in out + err, where
        if code == 1:
            errors = [line for line in err.splitlines() if line.startswith("Error: ")]
            assert len(errors) == 1, where
            assert err.startswith("Error: "), where
            break  # plan would refuse the same manifest


def _examples(name: str) -> settings:
    return settings(max_examples=max(10, math.ceil(settings().max_examples * SHARE[name])))


@_examples("mutated_local")
@given(doc=mutated(["local"]))
def test_mutated_local_manifests_validate_and_plan_cleanly(
    workdir: Path, doc: dict[str, Any]
) -> None:
    check(workdir, _dump(doc), ("validate", "plan"))


@_examples("mutated_any")
@given(doc=mutated(["slurm", "aws", "gke", "local"]))
def test_mutated_manifests_of_every_provider_validate_cleanly(
    workdir: Path, doc: dict[str, Any]
) -> None:
    check(workdir, _dump(doc), ("validate",))


TOKENS = [
    *"{}[]:,-?&*!|>'\"#%@ \n\tab01.$~=<\\",
    "targets:",
    "provider: local",
    "  ",
    "\n  ",
    "&a ",
    "*a",
    "<<: ",
    "max_workers: ",
    "groups:",
    "!!str ",
    "!!int ",
    "!!python/object:os.system ",
    "${X}",
    "$$",
    "2001-13-45",
    "9" * 5000,
]
YAML_TEXT = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


@_examples("random")
@given(
    text=st.one_of(YAML_TEXT, VALUES.map(_dump), st.builds(lambda v: _dump({"targets": v}), VALUES))
)
def test_random_yaml_is_answered_cleanly(workdir: Path, text: str) -> None:
    check(workdir, text, ("validate", "plan"))


def test_profile_runs_enough_cases_in_ci() -> None:
    """The ci profile's total is at least 2,000 cases."""
    ci = settings.get_profile("ci").max_examples
    assert sum(math.ceil(ci * share) for share in SHARE.values()) >= 2000
    if os.environ.get("HYPOTHESIS_PROFILE") == "ci":
        assert settings().max_examples == ci
