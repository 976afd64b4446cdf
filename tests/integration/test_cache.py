"""Caching on real Dask processes: the worker looks up and stores; a run killed with
kill -9 and started again computes only what had not finished."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Project, our_processes

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("cache_run.py")
LOCAL = """
    project: {name: cachetest}
    targets:
      local:
        provider: local
        max_workers: 2
        threads_per_worker: 1
        processes: true
        containers: none
    """


def script(
    project: Project,
    n: int,
    seconds: float,
    log: Path,
    *extra: str,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(project.root), str(n), str(seconds), str(log), *extra],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SCALABLE_CACHE_DIR": ""},
    )


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    return out


def starts(log: Path, offset: int = 0) -> list[int]:
    if not log.exists():
        return []
    return [int(line.split()[1]) for line in log.read_text()[offset:].splitlines()]


def entries(root: Path) -> list[Path]:
    cache = root / ".scalable" / "cache"
    return [
        p
        for p in cache.glob("*/*/*")
        if not any(part.startswith(".") for part in p.relative_to(cache).parts)
    ]


def test_worker_looks_up_and_stores_and_report_counts(project: Project) -> None:
    project.write(LOCAL)
    project.run("apply", "--auto-approve", check=True)
    try:
        log = project.root / "work.log"
        first = finish(script(project, 6, 0.2, log))
        assert sorted(int(x.split()[1]) for x in first.splitlines()) == [i * i for i in range(6)]
        assert sorted(starts(log)) == list(range(6))
        # Entries are written by the worker processes, into <root>/.scalable/cache.
        assert len(entries(project.root)) == 6
        finish(script(project, 6, 0.2, log))
        assert sorted(starts(log)) == list(range(6))  # every call a hit: nothing ran

        # `scalable cache` sums every worker's statistics, which each worker writes within
        # STATS_FLUSH_EVERY (2 s) of a call: under load, the last ones may still be due.
        deadline = time.time() + 30
        while True:
            out = project.run("cache", check=True).stdout
            if "50%" in out or time.time() > deadline:
                break
            time.sleep(1)
        assert "__main__.work" in out and "6 entries" in out
        assert "50%" in out  # 6 hits of 12 calls

        # Telemetry counts hits and misses per tag (the scheduler hears them).
        deadline = time.time() + 30
        while True:
            report = json.loads(project.run("report", "--json", check=True).stdout)
            cache = report.get("cache") or {}
            if cache.get("calls") == 12 or time.time() > deadline:
                break
            time.sleep(1)
        assert cache["hits"] == 6 and cache["misses"] == 6
        assert cache["by_tag"]["sim"]["hits"] == 6
        assert cache["time_saved_seconds"] >= 6 * 0.2
        text = project.run("report", check=True).stdout
        assert "Cache" in text and "50%" in text
    finally:
        project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []


def test_a_run_killed_midway_recomputes_only_what_was_missing(project: Project) -> None:
    project.write(LOCAL)
    project.run("apply", "--auto-approve", check=True)
    n = 12
    log = project.root / "work.log"
    try:
        proc = script(project, n, 1.0, log)
        deadline = time.time() + 120
        while len(entries(project.root)) < 4 and time.time() < deadline:
            time.sleep(0.1)
        assert len(entries(project.root)) >= 4, proc.stderr.read() if proc.poll() else ""
        # As a walltime or a preemption would: the client and every worker die at once.
        proc.kill()
        for ref in our_processes(project.root):
            # A process may have gone with an earlier group's kill.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(ref.pid, signal.SIGKILL)
        proc.wait()

        status = finish(script(project, n, 1.0, log, "--status"))
        cached = {int(x) for x in status.split()}
        assert 4 <= len(cached) < n
        offset = len(log.read_text())

        project.run("apply", "--auto-approve", check=True)  # capacity back
        out = finish(script(project, n, 1.0, log))
        assert sorted(int(x.split()[1]) for x in out.splitlines()) == [i * i for i in range(n)]
        second = starts(log, offset)
        assert sorted(second) == sorted(set(range(n)) - cached)  # only the missing ones
    finally:
        project.run("destroy", "--auto-approve")
    assert our_processes(project.root) == []


def test_caching_example_runs(project: Project) -> None:
    repo = Path(__file__).resolve().parents[2]
    (project.root / "examples").mkdir()
    shutil.copy(repo / "examples" / "caching.py", project.root / "examples" / "caching.py")
    shutil.copy(repo / "scalable.yaml", project.root / "scalable.yaml")
    proc = subprocess.run(
        [sys.executable, "examples/caching.py"], cwd=project.root, capture_output=True,
        text=True, timeout=240, env={**os.environ, "SCALABLE_CACHE_DIR": ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert "cached before the second pass: [0, 1, 2, 3]" in proc.stdout
    assert "cached: 8 of 1,000 calls; sizing for 992" in proc.stdout
    assert our_processes(project.root) == []
