"""Multi-node allocations (``nodes: K``) against a real Slurm of several nodes.

``scripts/slurm-dev.sh up`` configures partition ``multi`` on nodes ``<host>1`` and
``<host>2``: two more slurmd on the same machine (Debian's Slurm is built with
MULTIPLE_SLURMD), so ``sbatch --nodes=2`` gets two nodes and ``srun`` starts one task on
each, as on a cluster. Without that partition these tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.integration.test_slurm import (
    _REASON,
    client,
    hpc,  # noqa: F401 - fixture
    job_records,
    lineage_of,
    our_jobs,
    wait_for,
)
from tests.integration.test_slurm import (
    pytestmark as _slurm_marks,
)


def _no_multi_reason() -> str | None:
    if _REASON is not None:
        return _REASON
    out = subprocess.run(["sinfo", "-h", "-p", "multi", "-o", "%D"], capture_output=True,
                         text=True, timeout=30).stdout.split()
    if not out or int(out[0]) < 2:
        return ("this Slurm has no partition `multi` of two nodes: run "
                "`sudo scripts/slurm-dev.sh up` (it adds nodes <host>1 and <host>2)")
    return None


_MULTI = _no_multi_reason()
pytestmark = [*_slurm_marks,
              pytest.mark.skipif(_MULTI is not None, reason=_MULTI or "")]

ALLOCATION = """
project: {name: multinode}
targets:
  hpc:
    provider: slurm
    queue: multi
    walltime: "00:10:00"
    nodes: 2
    processes: 2
    max_workers: 4
    interface: eth0
    allocation_grace: 30
"""
NAMES = {f"workers.default[0]-{n}-{k}" for n in range(2) for k in range(2)}


def squeue_job(job_id: str) -> tuple[str, str, str]:
    """(state, number of nodes, node list) of one job."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T|%D|%N"],
                         capture_output=True, text=True, check=True).stdout.strip()
    state, nodes, nodelist = out.split("|")
    return state, nodes, nodelist


def task_pids(job_id: str, node_index: int) -> list[int]:
    """The processes of one job's srun task on one of its nodes (by their environment)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = dict(item.split("=", 1) for item in
                       (proc / "environ").read_bytes().decode(errors="replace").split("\0")
                       if "=" in item)
            comm = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if (env.get("SLURM_JOB_ID") == job_id and env.get("SLURM_NODEID") == str(node_index)
                and env.get("SLURM_STEP_ID") not in (None, "batch") and comm != "slurmstepd"):
            pids.append(int(proc.name))
    return pids


def worker_names(project: Project) -> set[str]:
    with client(project) as c:
        return {w["name"] for w in c.scheduler_info(n_workers=-1)["workers"].values()}


@pytest.mark.timeout(900)  # the shortfall becomes drift only after allocation_grace
def test_allocation_apply_compute_node_lost_drift_replace_destroy(hpc: Project) -> None:  # noqa: F811
    hpc.write(ALLOCATION)
    plan = hpc.run("plan", check=True).stdout
    assert ("workers.default: 1 allocation × 2 nodes × 2 workers = 4 workers "
            "(sbatch --nodes=2, srun: one task per node)") in plan
    assert "node-hours over the horizon: 0.333333" in plan  # 2 nodes × 10 minutes

    out = hpc.run("apply", "--auto-approve", check=True)
    assert "workers 4/4 ready" in out.stdout
    lineage = lineage_of(hpc)
    recs = job_records(hpc)
    assert list(recs) == ["workers.default[0]"]  # one resource for the allocation
    job_id = recs["workers.default[0]"]["id"]
    assert recs["workers.default[0]"]["attributes"]["workers"] == 4
    assert [r["id"] for r in our_jobs(lineage)] == [job_id]  # ONE Slurm job...
    state, nodes, nodelist = squeue_job(job_id)
    assert (state, nodes) == ("RUNNING", "2")  # ...of two nodes

    # A plain Client computes on the four workers, two on each node.
    with client(hpc) as c:
        assert {w["name"] for w in c.scheduler_info(n_workers=-1)["workers"].values()} == NAMES
        assert sum(c.gather(c.map(lambda x: x * 3, range(100)))) == 3 * sum(range(100))
        hosts = c.run(lambda: os.environ.get("SLURMD_NODENAME"))
        assert len(set(hosts.values())) == 2, hosts  # really one task per node

    # Node 1's task dies (both its workers, past their nannies): the other node's
    # workers keep running, and the allocation is short of workers.
    victims = task_pids(job_id, 1)
    assert victims
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: worker_names(hpc) == {n for n in NAMES if "]-0-" in n}, 60,
             "node 1's workers to leave")
    assert squeue_job(job_id)[0] == "RUNNING"
    # Within the start-up grace the shortfall is capacity on its way; after it, drift.
    def drift() -> str | None:
        text = hpc.run("plan").stdout
        return text if "workers: 4 → 2" in text else None

    plan = wait_for(drift, 240, "the shortfall to be drift", every=10)
    assert "# workers.default[0] (slurm.job) was changed: workers: 4 → 2" in plan
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in plan

    out = hpc.run("apply", "--auto-approve", check=True)
    assert "workers 4/4 ready" in out.stdout
    new_id = job_records(hpc)["workers.default[0]"]["id"]
    assert new_id != job_id
    assert [r["id"] for r in our_jobs(lineage)] == [new_id]  # the old allocation is gone
    assert worker_names(hpc) == NAMES
    assert "No changes." in hpc.run("plan", check=True).stdout

    out = hpc.run("destroy", "--auto-approve", check=True)
    assert "2 destroyed" in out.stdout
    assert our_jobs(lineage) == []
    assert task_pids(new_id, 0) == [] and task_pids(new_id, 1) == []


def test_preflight_asks_slurm_for_the_allocations_nodes(hpc: Project) -> None:  # noqa: F811
    # Three nodes from a partition of two: Slurm's own refusal, nothing submitted.
    hpc.write(ALLOCATION.replace("nodes: 2", "nodes: 3"))
    out = hpc.run("apply", "--auto-approve")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "Requested node configuration is not available" in out.stderr
    state = hpc.root / ".scalable" / "hpc" / "state.json"
    assert not state.exists() or not [
        r for r in hpc.state("hpc")["resources"] if r["type"] == "slurm.job"
    ]


def test_the_multinode_example_plans(hpc: Project) -> None:  # noqa: F811
    example = Path(__file__).resolve().parents[2] / "examples" / "slurm-multinode.yaml"
    hpc.write(example.read_text())
    out = hpc.run("plan", "--show-scripts", check=True).stdout
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in out
    assert "workers.default: 2 allocations × 2 nodes × 2 workers = 8 workers" in out
    assert "node-hours over the horizon: 1.33333" in out  # 4 nodes × 20 minutes
    assert "core-hours over the horizon: 2.66667" in out
    assert out.count("#SBATCH --nodes=2") == 2 and "#SBATCH --mem=1024M" in out
    assert out.count("srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=2") == 2


def test_a_partition_limit_shows_as_pending_with_slurms_reason(hpc: Project) -> None:  # noqa: F811
    """Slurm's own limit reasons pass through with PENDING, as capacity on its way.

    QOSMaxJobsPerUserLimit / AssocMaxJobsLimit need accounting (slurmdbd), which the
    development Slurm does not run; the partition-level equivalent Slurm enforces without
    it is MaxNodes (reason PartitionNodeLimit). A partition of the test's own, created
    and deleted here, is DOWN at submission (PartitionDown) and then gets MaxNodes=1
    under our 2-node allocation, as a site tightening a limit under queued jobs would.
    ``sbatch --test-only`` refuses a shape over MaxNodes (even with EnforcePartLimits=NO,
    where ``sbatch`` would queue it), so a plan then fails its preflight in Slurm's words;
    ``status`` still shows the pending job with its reason.
    """
    nodes = subprocess.run(["sinfo", "-h", "-p", "multi", "-o", "%N"], capture_output=True,
                           text=True, check=True).stdout.strip()
    part = f"scalable-cap-{os.getpid()}"
    subprocess.run(["scontrol", "create", f"PartitionName={part}", f"Nodes={nodes}",
                    "MaxTime=30", "State=DOWN"], check=True)
    try:
        hpc.write(ALLOCATION.replace("queue: multi", f"queue: {part}")
                  .replace("processes: 2", "processes: 1").replace("max_workers: 4",
                                                                   "max_workers: 2"))
        hpc.run("apply", "--auto-approve", "--no-wait", check=True)
        lineage = lineage_of(hpc)
        job_id = job_records(hpc)["workers.default[0]"]["id"]
        plan = hpc.run("plan", "--detailed-exitcode")
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert f"Slurm job {job_id} PENDING (PartitionDown)" in plan.stdout

        subprocess.run(["scontrol", "update", f"PartitionName={part}", "MaxNodes=1",
                        "State=UP"], check=True)
        wait_for(lambda: squeue_job(job_id)[0] == "PENDING"
                 and "PartitionNodeLimit" in subprocess.run(
                     ["squeue", "-h", "-j", job_id, "-o", "%r"], capture_output=True,
                     text=True).stdout, 30, "the partition limit")
        rows = json.loads(hpc.run("status", "--json", check=True).stdout)["resources"]
        row = next(r for r in rows if r["address"] == "workers.default[0]")
        assert row["observed"] == "pending", row
        assert f"Slurm job {job_id} PENDING (PartitionNodeLimit)" in row["reason"], row
        # A plan would submit nothing, but its preflight asks Slurm about the shape, which
        # Slurm now refuses: one clear error in Slurm's words, not a pending-forever job.
        plan = hpc.run("plan")
        assert plan.returncode == 1 and "Traceback" not in plan.stderr
        assert "Requested node configuration is not available" in plan.stderr

        out = hpc.run("destroy", "--auto-approve", check=True)
        assert "2 destroyed" in out.stdout
        assert our_jobs(lineage) == []
    finally:
        left = [r["id"] for r in our_jobs(lineage_of(hpc))] if (
            hpc.root / ".scalable" / "hpc" / "state.json").exists() else []
        if left:
            subprocess.run(["scancel", *left], check=False)
        subprocess.run(["scontrol", "delete", f"PartitionName={part}"], check=False)
