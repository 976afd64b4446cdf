"""The local target starts its scheduler and workers at once (issue 15): the scheduler is
confirmed after the workers were spawned, and a scheduler that fails takes them down."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import Project, our_processes

pytestmark = pytest.mark.slow


def test_a_scheduler_that_fails_stops_the_workers(project: Project, tmp_path: Path) -> None:
    sabotage = tmp_path / "sabotage"
    sabotage.mkdir()
    (sabotage / "sitecustomize.py").write_text(
        textwrap.dedent("""\
        import os, sys
        if os.environ.get("SCALABLE_ADDRESS") == "scheduler":
            sys.stderr.write("scheduler sabotaged by the test\\n")
            sys.stderr.flush()
            os._exit(3)
    """)
    )
    project.write(f"""
        targets:
          local:
            provider: local
            max_workers: 2
            processes: true
            env: {{PYTHONPATH: {sabotage}}}
        """)
    out = project.run("apply", "--auto-approve")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "the Dask scheduler did not start" in out.stderr
    assert "scheduler sabotaged by the test" in out.stderr
    # The workers were spawned before the scheduler was confirmed, then stopped.
    logs = project.root / ".scalable" / "local" / "logs"
    assert (logs / "workers.default[0].log").exists()
    assert our_processes(project.root) == []
    assert "workers.default" not in " ".join(r["address"] for r in project.state()["resources"])
    project.run("destroy", "--auto-approve", check=True)


def test_workers_are_spawned_before_the_scheduler_is_up(project: Project) -> None:
    project.write("""
        targets:
          local: {provider: local, max_workers: 2, processes: true}
        """)
    out = project.run("apply", "--auto-approve", check=True).stdout
    try:
        assert "workers 2/2 ready" in out
        # The scheduler writes its file once it listens; every worker process had been
        # started before that (one after the other, they would all start after it).
        listening_ms = (project.root / ".scalable" / "local" / "scheduler.json").stat().st_mtime
        workers = [r for r in project.state()["resources"] if r["address"] != "scheduler"]
        assert len(workers) == 2
        for rec in workers:
            assert rec["meta"]["start_time"] < listening_ms * 1000, rec
    finally:
        project.run("destroy", "--auto-approve", check=True)
