"""Resume on the real Slurm: a 1-minute walltime cuts an ensemble in half; the second
job computes only the calls the first did not finish."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.integration.test_slurm import _REASON, ACTIVE, hpc, job_records, lineage_of, our_jobs

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
]
__all__ = ["hpc"]

SCRIPT = Path(__file__).with_name("cache_run.py")
N, SECONDS = 60, 1.0


def run(project: Project, log: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(project.root), str(N), str(SECONDS), str(log),
         *extra],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SCALABLE_CACHE_DIR": "", "CACHE_RUN_TARGET": "hpc"},
        start_new_session=True,
    )


def starts(log: Path, offset: int = 0) -> list[int]:
    return [int(x.split()[1]) for x in log.read_text()[offset:].splitlines()] if (
        log.exists()) else []


MANIFEST = """
        project: {name: slurmcache}
        targets:
          hpc:
            provider: slurm
            queue: batch
            interface: eth0
            walltime: 1
            max_workers: 1
    """


@pytest.mark.timeout(900)
def test_walltime_cuts_a_run_and_the_next_job_computes_only_the_rest(hpc: Project) -> None:
    hpc.write(MANIFEST)
    log = hpc.root / "work.log"
    hpc.run("apply", "--auto-approve", check=True)
    lineage = lineage_of(hpc)
    try:
        job = job_records(hpc)["workers.default[0]"]["id"]
        proc = run(hpc, log)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and any(
                r["id"] == job and r["state"] in ACTIVE for r in our_jobs(lineage, False)):
            time.sleep(1)
        assert proc.poll() is None, "the run finished inside one walltime"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the driver dies with its allocation
        proc.wait()
        first = set(starts(log))
        status = subprocess.run(
            [sys.executable, str(SCRIPT), str(hpc.root), str(N), str(SECONDS), str(log),
             "--status"], cwd=hpc.root, capture_output=True, text=True, timeout=120,
            env={**os.environ, "SCALABLE_CACHE_DIR": ""}, check=True)
        cached = {int(x) for x in status.stdout.split()}
        assert 5 <= len(cached) < N and cached <= first
        offset = len(log.read_text())

        # A new job; with a longer walltime, so the rest fits even on a loaded machine.
        hpc.write(MANIFEST.replace("walltime: 1", "walltime: 10"))
        hpc.run("apply", "--auto-approve", check=True)
        second = run(hpc, log)
        out, err = second.communicate(timeout=240)
        assert second.returncode == 0, err
        assert sorted(int(x.split()[1]) for x in out.splitlines()) == [
            i * i for i in range(N)]
        assert sorted(starts(log, offset)) == sorted(set(range(N)) - cached)
    finally:
        hpc.run("destroy", "--auto-approve")
    assert our_jobs(lineage) == []
