"""GPU groups end to end: the declared GPUs become the Dask resource ``GPU`` on those
workers only, so ``tag="gpu"`` and ``resources={"GPU": 1}`` run there and nowhere else.

On the local target the GPU is simulated by declaring it; on the test Slurm the node has
two fake GPUs (``Gres=gpu:fake:2``, scripts/slurm-dev.sh), so the job really holds one:
Slurm sets its ``CUDA_VISIBLE_DEVICES``, which the task reads back.
"""

from __future__ import annotations

import subprocess

import pytest
from scalable import ScalableSession
from scalable.client import NoGpuWorkers

from tests.conftest import Project, our_processes
from tests.integration import test_slurm as slurm_tests

pytestmark = pytest.mark.slow


def where() -> dict[str, str | None]:
    import os

    import distributed

    return {"worker": str(distributed.get_worker().name),
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "job": os.environ.get("SLURM_JOB_ID")}


# Workers cannot import this test module: the function travels by value.
where.__module__ = "__main__"


def test_local_gpu_group_gets_gpu_tasks_and_cpu_tasks_stay_off_it(project: Project) -> None:
    project.write("""
        project: {name: gpus}
        targets:
          local:
            provider: local
            groups:
              cpu: {tags: [cpu], max_workers: 2}
              gpu: {tags: [gpu], max_workers: 1, gpus: 1}
        """)
    with ScalableSession.from_yaml(project.root / "scalable.yaml") as session:
        client = session.start()
        info = client.scheduler_info(n_workers=-1)["workers"].values()
        advertised = {w["name"]: w["resources"] for w in info}
        assert advertised["workers.gpu[0]"] == {"tag-gpu": 1.0, "GPU": 1.0}
        assert all("GPU" not in r for n, r in advertised.items() if n != "workers.gpu[0]")
        gpu = client.gather([client.submit(where, tag="gpu", pure=False) for _ in range(4)])
        by_resource = client.gather([client.submit(where, resources={"GPU": 1}, pure=False)
                                     for _ in range(4)])
        cpu = client.gather(client.map(lambda _: where(), range(8), tag="cpu", pure=False))
        assert {r["worker"] for r in gpu + by_resource} == {"workers.gpu[0]"}
        assert "workers.gpu[0]" not in {r["worker"] for r in cpu}
        with pytest.raises(NoGpuWorkers, match="most: 1"):
            client.submit(where, resources={"GPU": 2})
    assert our_processes(project.root) == []


@pytest.mark.slurm
@pytest.mark.skipif(slurm_tests._REASON is not None, reason=slurm_tests._REASON or "")
def test_slurm_gpu_job_holds_a_fake_gpu_and_runs_only_gpu_tasks(
        hpc: Project) -> None:
    hpc.write("""
        project: {name: slurmgpu}
        targets:
          hpc:
            provider: slurm
            queue: debug
            walltime: "00:10:00"
            interface: eth0
            groups:
              cpu: {tags: [cpu], max_workers: 1}
              gpu: {tags: [gpu], max_workers: 1, gpus: 1, gpu_type: fake}
        """)
    plan = hpc.run("plan", "--show-scripts", check=True).stdout
    assert "--gres=gpu:fake:1" in plan
    hpc.run("apply", "--auto-approve", check=True)
    jobs = slurm_tests.job_records(hpc)
    gpu_job, cpu_job = jobs["workers.gpu[0]"]["id"], jobs["workers.cpu[0]"]["id"]
    shown = subprocess.run(["scontrol", "show", "job", gpu_job], capture_output=True,
                           text=True, check=True).stdout
    assert "gpu:fake:1" in shown  # Slurm allocated the GRES (TresPerNode / Gres)
    with slurm_tests.client(hpc) as c:
        gpu = c.gather([c.submit(where, resources={"tag-gpu": 1, "GPU": 1}, pure=False)
                        for _ in range(4)])
        cpu = c.gather([c.submit(where, resources={"tag-cpu": 1}, pure=False)
                        for _ in range(4)])
    assert {(r["worker"], r["job"]) for r in gpu} == {("workers.gpu[0]", gpu_job)}
    assert {r["cuda"] for r in gpu} == {"0"}  # the job's one GPU, set by Slurm
    assert {(r["worker"], r["job"]) for r in cpu} == {("workers.cpu[0]", cpu_job)}
    assert {r["cuda"] for r in cpu} == {None}
    hpc.run("destroy", "--auto-approve", check=True)


@pytest.mark.slurm
@pytest.mark.skipif(slurm_tests._REASON is not None, reason=slurm_tests._REASON or "")
def test_slurm_plan_refuses_a_gpu_type_the_partition_lacks(hpc: Project) -> None:
    hpc.write("""
        targets:
          hpc:
            provider: slurm
            queue: debug
            walltime: "00:10:00"
            groups:
              gpu: {max_workers: 1, gpus: 1, gpu_type: a100}
              many: {max_workers: 1, gpus: 3}
        """)
    out = hpc.run("plan")
    assert out.returncode == 1
    assert ("Error: group gpu: gpu_type 'a100' is not in partition debug "
            "(its GPU types: fake)") in out.stderr
    assert "Traceback" not in out.stderr
    hpc.write("""
        targets:
          hpc:
            provider: slurm
            queue: debug
            walltime: "00:10:00"
            groups:
              many: {max_workers: 1, gpus: 3}
        """)
    out = hpc.run("plan")
    assert out.returncode == 1
    assert "group many: a job asks for 3 GPU(s)" in out.stderr
    assert "partition debug has 2 (sinfo Gres: fake:2)" in out.stderr


hpc = slurm_tests.hpc
