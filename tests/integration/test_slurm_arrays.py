"""Slurm job arrays and queue caps against the real Slurm (``scripts/slurm-dev.sh up``).

Accounting is off on the development Slurm (no slurmdbd), so association limits
(MaxSubmitJobs/MaxJobs) and QOS limits cannot be set here. What Slurm enforces without
accounting, and what these tests use, is the array throttle ``--array=…%M``: tasks over
it pend with Slurm's own reason ``JobArrayTaskLimit``.
"""

from __future__ import annotations

import re
import subprocess

from tests.conftest import Project
from tests.integration.test_slurm import (
    client,
    hpc,  # noqa: F401 - fixture
    job_records,
    lineage_of,
    our_jobs,
    pytestmark,  # noqa: F401 - the same markers and skip reason as the Slurm tests
    wait_for,
)

ARRAY = """
project: {name: arraytest}
targets:
  hpc:
    provider: slurm
    queue: batch
    walltime: "00:10:00"
    max_workers: 4
    array: true
    max_jobs_running: 2
    interface: eth0
"""


def array_rows(array_id: str) -> dict[str, str]:
    """Task id → state, for the tasks of one array still in squeue."""
    out = subprocess.run(
        [
            "squeue",
            "-h",
            "-r",
            "--me",
            "-t",
            "all",
            "-O",
            "ArrayJobID:\x1f,ArrayTaskID:\x1f,State:\x1f,Reason:",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        aid, task, state, reason = (x.strip() for x in line.split("\x1f"))
        if aid == array_id:
            rows[f"{aid}_{task}"] = f"{state} {reason}".strip()
    return rows


def live_tasks() -> set[str]:
    """``<array id>_<index>`` of every array task of ours still queued or running."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "--me", "-O", "ArrayJobID:\x1f,ArrayTaskID:\x1f,Name:"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        f"{a.strip()}_{t.strip()}"
        for a, t, n in (ln.split("\x1f") for ln in out.splitlines())
        if t.strip().isdigit() and n.strip().startswith("scalable-")
    }


def test_array_apply_throttle_drift_scale_down_destroy(hpc: Project) -> None:  # noqa: F811
    hpc.write(ARRAY)
    plan = hpc.run("plan", check=True).stdout
    assert "workers.default: 1 array of 4 tasks (sbatch --array=0-3%2)" in plan
    assert "--array=0%2" in hpc.run("plan", "--show-scripts", check=True).stdout

    hpc.run("apply", "--auto-approve", "--no-wait", check=True)
    lineage = lineage_of(hpc)
    recs = job_records(hpc)
    ids = {a: r["id"] for a, r in recs.items()}
    array_id = ids["workers.default[0]"].split("_")[0]
    # One submission: every task's id is <array id>_<index>.
    assert ids == {f"workers.default[{i}]": f"{array_id}_{i}" for i in range(4)}
    assert len({r["meta"]["script"] for r in recs.values()}) == 1
    # The throttle is Slurm's: two tasks run, two pend with its own reason...
    wait_for(
        lambda: (
            sorted(array_rows(array_id).values())
            == ["PENDING JobArrayTaskLimit"] * 2 + ["RUNNING None"] * 2
        ),
        60,
        "two tasks running, two held by the array throttle",
    )
    # ...which the plan shows as capacity on its way, not drift.
    plan = hpc.run("plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "Capacity on its way (2 pending):" in plan.stdout
    assert re.search(rf"Slurm job {array_id}_[23] PENDING \(JobArrayTaskLimit\)", plan.stdout)

    # A plain Client computes on the running tasks' workers (named by their index).
    with client(hpc) as c:
        c.wait_for_workers(2, timeout=120)
        names = {w["name"] for w in c.scheduler_info(n_workers=-1)["workers"].values()}
        assert names <= {f"workers.default[{i}]" for i in range(4)} and len(names) >= 2
        assert sum(c.gather(c.map(lambda x: x + 1, range(50)))) == sum(range(1, 51))

    # scancel of one task from outside: drift for that task alone, replaced by apply.
    victim = ids["workers.default[1]"]
    subprocess.run(["scancel", victim], check=True)
    wait_for(lambda: "RUNNING" not in array_rows(array_id).get(victim, ""), 30, "the cancel")
    plan = hpc.run("plan").stdout
    assert f"workers.default[1] (slurm.job) is gone: Slurm job {victim} CANCELLED" in plan
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan
    hpc.run("apply", "--auto-approve", "--no-wait", check=True)
    new_id = job_records(hpc)["workers.default[1]"]["id"]
    assert re.fullmatch(r"\d+_1", new_id) and new_id != victim  # a new array, task 1

    # Scale down to 2: the two highest tasks go (pending ones are cancelled first).
    hpc.write(ARRAY.replace("max_workers: 4", "max_workers: 2"))
    plan = hpc.run("plan").stdout
    assert "Plan: 0 to add, 0 to change, 2 to destroy." in plan
    assert "1 array of 2 tasks" in plan
    hpc.run("apply", "--auto-approve", "--no-wait", check=True)
    assert live_tasks() == {ids["workers.default[0]"], new_id}

    out = hpc.run("destroy", "--auto-approve", check=True)
    assert "3 destroyed" in out.stdout
    assert our_jobs(lineage) == []
    assert live_tasks() == set()


def test_queue_cap_holds_jobs_back_and_the_plan_says_so(hpc: Project) -> None:  # noqa: F811
    hpc.write(
        ARRAY.replace("    array: true\n    max_jobs_running: 2\n", "    max_jobs_queued: 2\n")
    )
    plan = hpc.run("plan", check=True).stdout
    assert "Plan: 3 to add" in plan  # the scheduler and two of the four jobs
    assert "2 job(s) wait: max_jobs_queued=2 caps this target at 2 job(s) in Slurm" in plan
    out = hpc.run("apply", "--auto-approve", check=True)
    assert "workers 2/2 ready" in out.stdout
    lineage = lineage_of(hpc)
    assert len(our_jobs(lineage)) == 2  # never more in the queue than the cap
    assert "No changes." in hpc.run("plan", check=True).stdout
    hpc.run("destroy", "--auto-approve", check=True)
    assert our_jobs(lineage) == []


def test_preflight_judges_the_array_with_slurm(hpc: Project) -> None:  # noqa: F811
    # MaxArraySize defaults to 1001: Slurm's own refusal, before anything is submitted.
    hpc.write(ARRAY.replace("max_workers: 4", "max_workers: 5000"))
    out = hpc.run("apply", "--auto-approve")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "Invalid job array specification" in out.stderr
    assert not (hpc.root / ".scalable" / "hpc" / "state.json").exists() or not [
        r for r in hpc.state("hpc")["resources"] if r["type"] == "slurm.job"
    ]
