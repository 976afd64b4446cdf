"""The SGE provider against a real Son of Grid Engine 8.1.9 (``sudo scripts/sge-dev.sh up``).

The same checks as the Slurm provider's: the real CLI in a subprocess, SGE itself asked
with ``qstat``, a plain ``distributed.Client`` on the emitted address with the emitted
TLS files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.conftest import Project
from tests.integration.test_slurm import client, wait_for


def _no_sge_reason() -> str | None:
    if shutil.which("qsub") is None:
        return "no SGE client commands on PATH (run: sudo scripts/sge-dev.sh up)"
    probe = subprocess.run(["qstat"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"the SGE qmaster does not answer (qstat: {probe.stderr.strip()[:200]})"
    return None


_REASON = _no_sge_reason()
pytestmark = [
    pytest.mark.sge,
    pytest.mark.slow,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
]


def qstat_jobs() -> dict[str, dict[str, str]]:
    """Every job of every user, by id: name and state (SGE's own letters)."""
    out = subprocess.run(
        ["qstat", "-xml", "-u", "*"], capture_output=True, text=True, check=True
    ).stdout
    jobs = {}
    for jl in ET.fromstring(out).iter("job_list"):
        jobs[jl.findtext("JB_job_number") or ""] = {
            "name": jl.findtext("JB_name") or "",
            "state": jl.findtext("state") or "",
        }
    return jobs


def our_jobs(lineage: str) -> dict[str, dict[str, str]]:
    return {
        i: j for i, j in qstat_jobs().items() if j["name"].startswith(f"scalable-{lineage[:8]}-")
    }


def job_records(project: Project) -> dict[str, dict]:
    return {r["address"]: r for r in project.state("hpc")["resources"] if r["type"] == "sge.job"}


@pytest.fixture
def hpc(project: Project) -> Iterator[Project]:
    """A project whose leftover jobs are deleted (and so reported) after the test."""
    yield project
    state = project.root / ".scalable" / "hpc" / "state.json"
    if state.exists():
        left = our_jobs(json.loads(state.read_text())["lineage"])
        if left:
            subprocess.run(["qdel", *left], check=False, capture_output=True)


MANIFEST = """
project: {name: sgetest}
targets:
  hpc:
    provider: sge
    walltime: "00:10:00"
    processes: 2
    max_workers: 3
    interface: eth0
"""


def test_apply_compute_drift_replace_destroy(hpc: Project) -> None:
    hpc.write(MANIFEST)
    out = hpc.run("apply", "--auto-approve", check=True)
    assert "workers 3/3 ready" in out.stdout
    assert re.search(r'scheduler_address = "tls://', out.stdout)
    lineage = str(hpc.state("hpc")["lineage"])
    jobs = job_records(hpc)
    assert sorted(jobs) == ["workers.default[0]", "workers.default[1]"]
    live = our_jobs(lineage)
    assert set(live) == {j["id"] for j in jobs.values()}
    assert all(j["state"] == "r" for j in live.values())
    assert {j["name"] for j in live.values()} == {
        f"scalable-{lineage[:8]}-default-0",
        f"scalable-{lineage[:8]}-default-1",
    }
    # Identity is in the job context: what discover reads back.
    ctx = subprocess.run(
        ["qstat", "-j", jobs["workers.default[0]"]["id"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"scalable_lineage={lineage}" in ctx
    assert "scalable_address=workers.default[0]" in ctx

    with client(hpc) as c:
        names = {w["name"] for w in c.scheduler_info(n_workers=-1)["workers"].values()}
        assert names == {"workers.default[0]-0", "workers.default[0]-1", "workers.default[1]"}
        assert sum(c.gather(c.map(lambda x: x * x, range(200)))) == sum(x * x for x in range(200))
    assert "No changes." in hpc.run("plan", check=True).stdout

    # qdel from outside: the plan shows the drift in SGE's words, apply replaces it.
    victim = jobs["workers.default[1]"]["id"]
    subprocess.run(["qdel", victim], check=True, capture_output=True)
    wait_for(lambda: victim not in our_jobs(lineage), 60, "the qdel")
    plan = hpc.run("plan", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "Objects have changed outside of scalable" in plan.stdout
    assert f"workers.default[1] (sge.job) is gone: SGE job {victim}" in plan.stdout
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan.stdout
    out = hpc.run("apply", "--auto-approve", check=True)
    assert "workers 3/3 ready" in out.stdout
    new_id = job_records(hpc)["workers.default[1]"]["id"]
    assert new_id != victim
    assert set(our_jobs(lineage)) == {jobs["workers.default[0]"]["id"], new_id}
    with client(hpc) as c:
        assert c.submit(lambda: 41 + 1).result(timeout=30) == 42

    sched = next(r for r in hpc.state("hpc")["resources"] if r["address"] == "scheduler")
    from scalable.providers.processes import ProcessRef

    ref = ProcessRef(sched["meta"]["pid"], sched["meta"]["start_time"])
    assert ref.alive()
    out = hpc.run("destroy", "--auto-approve", check=True)
    assert "Destroy complete! Resources: 0 added, 0 changed, 3 destroyed." in out.stdout
    wait_for(lambda: not our_jobs(lineage), 60, "the jobs to leave qstat")
    assert hpc.state("hpc")["resources"] == []
    assert not ref.alive()


def test_walltime_expiry_mid_computation_loses_nothing(hpc: Project) -> None:
    hpc.write("""
        project: {name: sgetest}
        targets:
          hpc:
            provider: sge
            interface: eth0
            groups:
              short: {max_workers: 1, walltime: 1}
              long: {max_workers: 1, walltime: 10}
    """)
    plan = hpc.run("plan", "--show-scripts", check=True).stdout
    assert "#$ -l h_rt=0:01:00" in plan  # walltime → SGE's hard run-time limit
    assert "--lifetime 45s --lifetime-stagger 3s" in plan  # margin capped at 15 s
    hpc.run("apply", "--auto-approve", check=True)
    lineage = str(hpc.state("hpc")["lineage"])
    short_id = job_records(hpc)["workers.short[0]"]["id"]

    def slow(x: int) -> int:
        time.sleep(0.5)
        return x * 2

    with client(hpc) as c:
        futures = c.map(slow, range(240), pure=False)
        wait_for(lambda: short_id not in our_jobs(lineage), 150, "the 1-minute job to end")
        assert not all(f.done() for f in futures), "computation finished before the expiry"
        assert c.gather(futures) == [2 * x for x in range(240)]
        left = {w["name"] for w in c.scheduler_info(n_workers=-1)["workers"].values()}
        assert left == {"workers.long[0]"}
    plan = hpc.run("plan").stdout
    assert f"workers.short[0] (sge.job) is gone: SGE job {short_id}" in plan
    assert "Plan: 1 to add" in plan
    hpc.run("destroy", "--auto-approve", check=True)
    wait_for(lambda: not our_jobs(lineage), 60, "the jobs to leave qstat")


def test_queue_cap_holds_jobs_back_and_says_so(hpc: Project) -> None:
    hpc.write(
        MANIFEST.replace(
            "processes: 2\n    max_workers: 3", "max_workers: 3\n    max_jobs_queued: 2"
        )
    )
    plan = hpc.run("plan", check=True).stdout
    assert "Plan: 3 to add" in plan  # the scheduler and two jobs
    assert "1 job(s) wait: max_jobs_queued=2" in plan
    hpc.run("apply", "--auto-approve", check=True)
    lineage = str(hpc.state("hpc")["lineage"])
    assert len(our_jobs(lineage)) == 2
    hpc.run("destroy", "--auto-approve", check=True)
    wait_for(lambda: not our_jobs(lineage), 60, "the jobs to leave qstat")


def test_clear_error_for_an_unknown_queue(hpc: Project) -> None:
    hpc.write(MANIFEST.replace("processes: 2", "queue: nosuch.q"))
    out = hpc.run("apply", "--auto-approve")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "Error:" in out.stderr and "nosuch.q" in out.stderr, out.stderr


def test_a_job_in_error_state_is_replaced_and_deleted(hpc: Project) -> None:
    # A working directory that does not exist: SGE puts the job into Eqw (it never runs).
    hpc.write(
        MANIFEST.replace(
            "processes: 2\n    max_workers: 3",
            'max_workers: 1\n    job_extra_directives: ["-wd /nonexistent-scalable"]',
        )
    )
    hpc.run("apply", "--auto-approve", "--no-wait", check=True)
    lineage = str(hpc.state("hpc")["lineage"])
    first = job_records(hpc)["workers.default[0]"]["id"]
    wait_for(lambda: our_jobs(lineage).get(first, {}).get("state") == "Eqw", 60, "Eqw")
    plan = hpc.run("plan", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout
    assert f"SGE job {first} Eqw (in error state" in plan.stdout
    hpc.run("apply", "--auto-approve", "--no-wait", check=True)
    second = job_records(hpc)["workers.default[0]"]["id"]
    assert second != first
    wait_for(lambda: first not in our_jobs(lineage), 60, "the stuck job to be deleted")
    hpc.run("destroy", "--auto-approve", check=True)
    wait_for(lambda: not our_jobs(lineage), 60, "nothing of ours left in qstat")


def test_pending_capacity_is_not_drift_and_destroy_deletes_it(hpc: Project) -> None:
    # A held job (`#$ -h`, state hqw) never starts by itself: capacity on its way,
    # with SGE's own state, not drift; destroy deletes it (pending jobs first).
    hpc.write(
        MANIFEST.replace(
            "processes: 2\n    max_workers: 3",
            'max_workers: 1\n    job_extra_directives: ["-h"]',
        )
    )
    hpc.run("apply", "--auto-approve", "--no-wait", check=True)
    lineage = str(hpc.state("hpc")["lineage"])
    held = job_records(hpc)["workers.default[0]"]["id"]
    wait_for(lambda: our_jobs(lineage).get(held, {}).get("state") == "hqw", 60, "hqw")
    plan = hpc.run("plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "Capacity on its way (1 pending):" in plan.stdout
    assert f"SGE job {held} hqw (on hold)" in plan.stdout
    assert "No changes." in plan.stdout
    out = hpc.run("destroy", "--auto-approve", check=True)
    assert "2 destroyed" in out.stdout
    wait_for(lambda: not our_jobs(lineage), 60, "nothing of ours left in qstat")


def test_scale_down_then_an_orphan_with_our_lineage_is_deleted(hpc: Project) -> None:
    hpc.write(MANIFEST.replace("processes: 2\n    max_workers: 3", "max_workers: 3"))
    hpc.run("apply", "--auto-approve", "--no-wait", check=True)
    lineage = str(hpc.state("hpc")["lineage"])
    ids = {a: r["id"] for a, r in job_records(hpc).items()}
    assert len(ids) == 3 and set(our_jobs(lineage)) == set(ids.values())

    # Scale down to 1: the two highest jobs go, the first stays.
    hpc.write(MANIFEST.replace("processes: 2\n    max_workers: 3", "max_workers: 1"))
    plan = hpc.run("plan", check=True).stdout
    assert "Plan: 0 to add, 0 to change, 2 to destroy." in plan
    hpc.run("apply", "--auto-approve", "--no-wait", check=True)
    wait_for(lambda: set(our_jobs(lineage)) == {ids["workers.default[0]"]}, 60,
             "the two jobs to leave qstat")

    # A job carrying this state's lineage that the state does not hold (a record lost
    # in a crash): found through its job context, and deleted by the next apply.
    script = hpc.root / "orphan.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"#$ -N scalable-{lineage[:8]}-default-9\n"
        f"#$ -ac scalable_lineage={lineage},scalable_address=workers.default[9],"
        "scalable_key=lost-key\n"
        "#$ -S /bin/bash\n#$ -o /dev/null\n#$ -e /dev/null\nsleep 300\n"
    )
    orphan = subprocess.run(
        ["qsub", "-terse", str(script)], capture_output=True, text=True, check=True,
        cwd=hpc.root,
    ).stdout.strip()
    plan = hpc.run("plan").stdout
    assert f"{orphan} carries this state's lineage but is not recorded" in plan
    hpc.run("apply", "--auto-approve", "--no-wait", check=True)
    wait_for(lambda: orphan not in our_jobs(lineage), 60, "the orphan to be deleted")
    hpc.run("destroy", "--auto-approve", check=True)
    wait_for(lambda: not our_jobs(lineage), 60, "nothing of ours left in qstat")
