"""The local target starts its scheduler and workers at once (issue 15): the scheduler is
confirmed after the workers were spawned, and a scheduler that fails takes them down."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable
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


def _worker_children(root: Path) -> dict[str, list[str]]:
    """Each worker record's nanny → the command lines of its (worker) children."""
    import psutil

    state = json.loads((root / ".scalable" / "local" / "state.json").read_text())
    out = {}
    for rec in state["resources"]:
        if rec["address"] == "scheduler":
            continue
        nanny = psutil.Process(rec["meta"]["pid"])
        out[" ".join(nanny.cmdline())] = [" ".join(c.cmdline()) for c in nanny.children()]
    return out


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_nannies_fork_their_workers_and_still_enforce_memory_and_restart(
        project: Project) -> None:
    """Workers start by fork from their nanny (no second interpreter importing
    distributed), and the nanny still does its jobs: it kills a worker past its memory
    limit, restarts it, and ``Client.restart`` works."""
    from distributed import Client
    from distributed.scheduler import KilledWorker

    project.write("""
        targets:
          local:
            provider: local
            max_workers: 2
            processes: true
            memory_per_worker: 300MiB
            # One death of a worker is enough to fail its task (Dask retries 3 times).
            env: {DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES: "0"}
        """)
    project.run("apply", "--auto-approve", check=True)
    try:
        children = _worker_children(project.root)
        assert len(children) == 2
        for nanny, kids in children.items():
            # A forked worker runs under its nanny's own command line; a spawned one
            # under multiprocessing's ``spawn_main``.
            assert kids == [nanny], children
        addr = project.state()["outputs"]["scheduler_address"]
        with Client(addr, timeout=10) as c:
            before = {w["name"]: a for a, w in c.scheduler_info()["workers"].items()}

            def hog() -> int:
                blocks = [bytearray(50 * 2**20) for _ in range(12)]  # 600 MiB > 300 MiB
                return len(blocks)

            with pytest.raises(KilledWorker):
                c.submit(hog, pure=False).result(timeout=60)
            # The nanny started a new worker (a new address, the same name), by fork again.
            _wait(lambda: len(c.scheduler_info()["workers"]) == 2
                  and {w["name"]: a for a, w in c.scheduler_info()["workers"].items()}
                  != before, "the killed worker's restart")
            assert all(kids == [n] for n, kids in _worker_children(project.root).items())
            c.restart(timeout=60)
            assert c.submit(sum, [1, 2, 3], pure=False).result(timeout=30) == 6
    finally:
        project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []
