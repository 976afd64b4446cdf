"""Multi-node Slurm allocations (``nodes: K``), without a Slurm: the job script, the
resources and worker names, the plan's note and node-hours, worker counting in refresh.

The same allocations run against the real Slurm in tests/integration/test_slurm_multinode.py.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from scalable.providers.base import ProviderError
from scalable.providers.batch.providers import SgeProvider
from scalable.providers.slurm import commands as slurm
from scalable.providers.slurm import script as scripts
from scalable.providers.slurm.provider import JOB, SlurmProvider
from scalable.state.model import ResourceRecord

from tests.unit.test_slurm_script import LINEAGE, directives, job, provider

ALLOC = """
    queue: multi
    walltime: "01:00:00"
    nodes: 2
    processes: 4
    cores: 4
    memory: 8GiB
    max_workers: 16
"""


def test_an_allocation_is_one_job_of_k_nodes_running_srun(tmp_path: Path) -> None:
    _, text = job(tmp_path, ALLOC)
    lines = directives(text)
    assert "--nodes=2" in lines and "--ntasks-per-node=1" in lines
    assert "-n 1" not in lines  # dask-jobqueue's one task, replaced by one per node
    # cores and memory are per node, as Slurm's --cpus-per-task and --mem are.
    assert "--cpus-per-task=4" in lines and "--mem=8192M" in lines
    srun = next(ln for ln in text.splitlines() if ln.startswith("srun "))
    argv = shlex.split(srun)
    assert argv[:8] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                        "--cpus-per-task=4", "--kill-on-bad-exit=0", "bash", "-c"]
    assert argv[8] == scripts.SRUN_TASK
    assert argv[9:11] == ["scalable-worker", "workers.default[0]"]
    worker = argv[11:]
    # dask-jobqueue's way with processes > 1: one `dask worker --nworkers P` per node.
    assert worker[worker.index("--nworkers") + 1] == "4"
    assert "--name" not in worker  # set per node inside the task
    assert worker[worker.index("--memory-limit") + 1] == str(2 * 2**30)


def test_the_srun_task_names_each_nodes_workers(tmp_path: Path) -> None:
    # The exact bash srun runs on every node: the worker's name gets the node's index.
    out = subprocess.run(
        ["bash", "-c", scripts.SRUN_TASK, "scalable-worker", "workers.mn[3]",
         "printf", "%s|"],
        env={"SLURM_NODEID": "1", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        check=True,
    ).stdout
    assert out == "--name|workers.mn[3]-1|"


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_allocation_script_is_valid_bash(tmp_path: Path) -> None:
    _, text = job(tmp_path, ALLOC)
    script = tmp_path / "job.sh"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_groups_scale_in_whole_allocations(tmp_path: Path) -> None:
    p = provider(tmp_path, ALLOC.replace("max_workers: 16", "max_workers: 10"))
    jobs = [r for r in p.desired() if r.type == JOB]
    # 10 workers asked for, 8 per allocation: two whole allocations (16 workers).
    assert [r.address for r in jobs] == ["workers.default[0]", "workers.default[1]"]
    a = jobs[1].attributes
    assert (a["nodes"], a["workers_per_node"], a["workers"]) == (2, 4, 8)
    assert (a["cores_per_node"], a["cores"]) == (4, 8)
    assert a["memory_per_node"] == "8GiB" and "memory" not in a
    assert a["node_hours"] == 2.0 and a["core_hours"] == 8.0
    assert jobs[1].worker_names == tuple(
        f"workers.default[1]-{n}-{k}" for n in range(2) for k in range(4))
    note = " ".join(p.plan_notes())
    assert ("workers.default: 2 allocations × 2 nodes × 4 workers = 16 workers "
            "(sbatch --nodes=2, srun: one task per node)") in note
    assert "10 asked for, rounded up: a group scales in whole allocations of 8" in note


def test_one_worker_per_node_is_named_after_the_node(tmp_path: Path) -> None:
    p = provider(tmp_path, ALLOC.replace("processes: 4", "processes: 1"))
    res = next(r for r in p.desired() if r.type == JOB)
    assert res.worker_names == ("workers.default[0]-0", "workers.default[0]-1")


def test_node_hours_reach_the_price_and_the_cost_block(tmp_path: Path) -> None:
    p = provider(tmp_path, ALLOC + "    pricing: {core_hour_usd: 0.05}\n")
    res = next(r for r in p.desired() if r.type == JOB)
    price = p.price(res)
    assert price.nodes == 2 and price.cores == 8
    assert price.hourly == pytest.approx(0.40)  # 8 cores × $0.05
    (tmp_path / "one").mkdir()
    one_node = provider(tmp_path / "one", "queue: batch\nprocesses: 4\nmax_workers: 4\n")
    assert one_node.price(next(r for r in one_node.desired() if r.type == JOB)).nodes == 0


def test_preflight_asks_slurm_about_k_nodes(tmp_path: Path) -> None:
    p = provider(tmp_path, ALLOC)
    opts = p._test_options(p.target.group("default"))
    assert opts[:4] == ["-N", "2", "--ntasks-per-node", "1"]
    assert "-n" not in opts


def test_allocations_and_arrays_do_not_mix(tmp_path: Path) -> None:
    p = provider(tmp_path, ALLOC + "    array: true\n")
    with pytest.raises(ProviderError, match="nodes: 2 and array: true"):
        p.check_config()


def test_other_batch_systems_refuse_nodes(tmp_path: Path) -> None:
    from scalable.manifest.loader import load_manifest
    from scalable.spec import build_target

    path = tmp_path / "scalable.yaml"
    path.write_text("targets:\n  hpc:\n    provider: sge\n    nodes: 2\n    max_workers: 4\n")
    spec = build_target(load_manifest(path), "hpc")
    with pytest.raises(ProviderError, match="multi-node allocations\\) is Slurm-only"):
        SgeProvider(spec, spec.workdir).validate()


# -- refresh: workers counted per allocation -------------------------------------------


def _alloc_record(p: SlurmProvider) -> ResourceRecord:
    res = next(r for r in p.desired() if r.type == JOB)
    return ResourceRecord(address=res.address, type=JOB, status="ready",
                          idempotency_key="k", id="42", attributes=dict(res.attributes),
                          worker_names=list(res.worker_names),
                          meta={"job_id": "42", "job_name": "scalable-x-default-0"})


def _observe(monkeypatch: pytest.MonkeyPatch, p: SlurmProvider, start: str,
             connected: set[str] | None) -> Any:
    row = slurm.Job(id="42", name="scalable-x-default-0", state="RUNNING", reason="None",
                    start=start, partition="multi", nodes="vm[1-2]", time_limit="1:00:00",
                    wckey="", comment="")
    monkeypatch.setattr(p, "_jobs", lambda fresh=False: [row])
    monkeypatch.setattr(p, "_connected_workers", lambda records: connected)
    rec = _alloc_record(p)
    return p.observe([rec])[rec.address]


def test_an_allocation_short_of_workers_is_drift_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = provider(tmp_path, ALLOC.replace("max_workers: 16", "max_workers: 8"))
    names = {f"workers.default[0]-{n}-{k}" for n in range(2) for k in range(4)}
    ok = _observe(monkeypatch, p, "2020-01-01T00:00:00", names | {"someone-else"})
    assert ok.status == "alive" and "8/8 workers connected" in ok.reason
    assert ok.attributes == {}
    # Node 1's four workers are gone: the record's `workers` as found, so the plan
    # replaces the allocation.
    short = _observe(monkeypatch, p, "2020-01-01T00:00:00",
                     {n for n in names if "]-0-" in n})
    assert short.status == "alive" and short.attributes == {"workers": 4}
    assert "only 4/8 workers connected (the others ended)" in short.reason


def test_a_starting_allocation_is_pending_not_drift(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import datetime

    p = provider(tmp_path, ALLOC.replace("max_workers: 16", "max_workers: 8"))
    now = datetime.now().isoformat(timespec="seconds")
    obs = _observe(monkeypatch, p, now, {"workers.default[0]-0-0"})
    assert obs.status == "pending" and obs.attributes == {}
    assert "1/8 workers connected so far (starting)" in obs.reason


def test_no_scheduler_to_ask_means_no_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = provider(tmp_path, ALLOC.replace("max_workers: 16", "max_workers: 8"))
    obs = _observe(monkeypatch, p, "2020-01-01T00:00:00", None)
    assert obs.status == "alive" and obs.attributes == {}


def test_lineage_placeholder_in_golden_comment(tmp_path: Path) -> None:
    _, text = job(tmp_path, ALLOC)
    assert f"--comment=scalable;lineage={LINEAGE};address=workers.default[0];" in text
