"""Worker groups in containers, for real: a group runs its Dask workers under bubblewrap
with two binds; a task routed to it by tag reads through one bind and writes through the
other; its workers live in another mount namespace than the host's — on the local target
and on the real Slurm.

bwrap stands in for the runtimes that cannot run on these machines (podman, apptainer:
see FACTS); their command lines are golden-tested in tests/unit/test_containers.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Project
from tests.integration import test_slurm as slurm_tests

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bwrap") is None,
                       reason="bubblewrap is not installed (apt-get install bubblewrap)"),
]


def manifest(target: str, indir: Path, outdir: Path, inside: str, extra: str = "",
             gpu: str = "") -> str:
    """The issue's three groups: plain CPU, a container with two binds and (``gpu``: the
    group's keys) a GPU group."""
    gpu_group = f"      gpu: {{max_workers: 1, tags: [gpu], {gpu}}}\n" if gpu else ""
    return f"""
project: {{name: groupstest}}
targets:
  {target}:
{extra}
    groups:
      plain:
        max_workers: 1
        tags: [post]
      boxed:
        max_workers: 1
        tags: [model]
        container:
          runtime: bwrap
          image: /
          binds:
            {indir}: {inside}/in
            {outdir}: {inside}/out
          env: {{MODEL_NAME: "energy 'v7'; $(not run)"}}
{gpu_group}"""


def worker_namespaces(root: Path, group: str) -> dict[int, str]:
    """Host-side view: the mount namespace (/proc/<pid>/ns/mnt, read by the host) of every
    dask worker process of this project's ``group`` (its command line names the
    project's folder and the worker's address)."""
    out = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            argv = proc.info["cmdline"] or []
            if not argv or argv[0].endswith("bwrap") or "distributed.cli.dask_worker" not in argv:
                continue
            name = argv[argv.index("--name") + 1] if "--name" in argv else ""
            if not name.startswith(f"workers.{group}[") or str(root) not in " ".join(argv):
                continue
            out[proc.pid] = os.readlink(f"/proc/{proc.pid}/ns/mnt")
        except (psutil.Error, OSError, IndexError):
            continue
    return out


def check_gpu(client: Any, gpu_job: str | None = None) -> None:
    """GPU tasks (by tag or by the GPU resource) run on the gpu group's worker only; on
    Slurm inside the job that holds the fake GPU (Slurm sets CUDA_VISIBLE_DEVICES)."""
    import distributed

    def where() -> tuple[str, str | None, str | None]:
        return (str(distributed.get_worker().name), os.environ.get("SLURM_JOB_ID"),
                os.environ.get("CUDA_VISIBLE_DEVICES"))

    futures = [client.submit(where, tag="gpu", pure=False) for _ in range(3)]
    futures += [client.submit(where, resources={"GPU": 1}, pure=False) for _ in range(3)]
    ran = set(client.gather(futures))
    assert {name for name, _, _ in ran} == {"workers.gpu[0]"}, ran
    if gpu_job is not None:
        assert ran == {("workers.gpu[0]", gpu_job, "0")}, ran
    others = client.gather([client.submit(where, tag=t, pure=False) for t in ("post", "model")])
    assert all(name != "workers.gpu[0]" for name, _, _ in others), others


def check_run(project: Project, target: str, client: Any, inside: str, outdir: Path) -> None:
    # Tasks defined here are pickled by value (the workers cannot import this module).
    def model_task(inside: str) -> tuple[str, str, str]:
        """Runs in the container: read through one bind, write through the other."""
        text = Path(f"{inside}/in/input.txt").read_text()
        Path(f"{inside}/out/result.txt").write_text(text.upper() + os.environ["MODEL_NAME"])
        return text, os.readlink("/proc/self/ns/mnt"), os.environ["MODEL_NAME"]

    def plain_task(inside: str) -> tuple[bool, str]:
        return Path(f"{inside}/in/input.txt").exists(), os.readlink("/proc/self/ns/mnt")

    host_ns = os.readlink("/proc/self/ns/mnt")
    text, ns, env = client.submit(model_task, inside, tag="model", pure=False).result(60)
    assert text == "hello from the host\n"
    assert env == "energy 'v7'; $(not run)"  # the value arrived intact, unexpanded
    assert ns != host_ns
    assert (outdir / "result.txt").read_text() == "HELLO FROM THE HOST\n" + env
    seen, plain_ns = client.submit(plain_task, inside, tag="post", pure=False).result(60)
    assert seen is False and plain_ns == host_ns  # the plain group shares the host's view
    boxed = worker_namespaces(project.root, "boxed")
    assert boxed and all(v != host_ns for v in boxed.values()), boxed
    plain = worker_namespaces(project.root, "plain")
    assert plain and all(v == host_ns for v in plain.values()), plain


def prepare(project: Project) -> tuple[Path, Path, str]:
    indir, outdir = project.root / "inputs", project.root / "outputs"
    indir.mkdir()
    outdir.mkdir()
    (indir / "input.txt").write_text("hello from the host\n")
    inside = f"/tmp/model-{uuid.uuid4().hex[:8]}"  # only exists in the container
    return indir, outdir, inside


def test_local_group_in_bwrap_reads_and_writes_through_its_binds(project: Project) -> None:
    from scalable import connect

    indir, outdir, inside = prepare(project)
    project.write(manifest("local", indir, outdir, inside, "    provider: local\n",
                           gpu="gpus: 1"))
    plan = project.run("plan", "--show-scripts", check=True).stdout
    assert "Worker groups:" in plan
    assert "boxed: 1 worker(s) [tags: model], bwrap image /" in plan
    assert f"bind {indir} → {inside}/in" in plan
    assert "plain: 1 worker(s) [tags: post], plain processes" in plan
    cmd = plan.split("# ---- workers.boxed[0]: command ----\n", 1)[1].splitlines()[0]
    assert cmd.startswith("bwrap --unshare-pid --ro-bind / / ")
    doc = json.loads(project.run("plan", "--json", check=True).stdout)
    groups = {g["name"]: g for g in doc["groups"]}
    assert groups["boxed"]["container"]["binds"] == {str(indir): f"{inside}/in",
                                                     str(outdir): f"{inside}/out"}
    assert groups["boxed"]["container"]["env"] == ["MODEL_NAME"]  # names, never values
    assert groups["plain"]["container"] is None

    project.run("apply", "--auto-approve", check=True)
    try:
        with connect("local", file=project.root / "scalable.yaml") as client:
            check_run(project, "local", client, inside, outdir)
            check_gpu(client)
    finally:
        project.run("destroy", "--auto-approve", check=True)
    assert worker_namespaces(project.root, "boxed") == {}


def test_a_missing_bind_is_refused_at_plan_naming_group_and_path(project: Project) -> None:
    indir, outdir, inside = prepare(project)
    shutil.rmtree(outdir)
    project.write(manifest("local", indir, outdir, inside, "    provider: local\n"))
    out = project.run("plan")
    assert out.returncode == 1
    assert f"Error: group boxed: container bind '{outdir}' does not exist" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slurm
@pytest.mark.skipif(slurm_tests._REASON is not None, reason=slurm_tests._REASON or "")
def test_slurm_group_in_bwrap_reads_and_writes_through_its_binds(project: Project) -> None:
    from scalable import connect

    indir, outdir, inside = prepare(project)
    project.write(manifest("hpc", indir, outdir, inside,
                           '    provider: slurm\n    walltime: "00:10:00"\n'
                           "    interface: eth0\n", gpu="gpus: 1, gpu_type: fake"))
    plan = project.run("plan", "--show-scripts", check=True).stdout
    script = plan.split("# ---- workers.boxed[0]: batch script ----\n", 1)[1]
    assert "bwrap --unshare-pid" in script
    assert f"--bind {indir} {inside}/in" in script
    gpu_script = plan.split("# ---- workers.gpu[0]: batch script ----\n", 1)[1]
    assert "#SBATCH --gres=gpu:fake:1" in gpu_script
    project.run("apply", "--auto-approve", check=True)
    try:
        gpu_job = next(r["id"] for r in project.state("hpc")["resources"]
                       if r["address"] == "workers.gpu[0]")
        with connect("hpc", file=project.root / "scalable.yaml") as client:
            client.wait_for_workers(3, timeout=120)
            check_run(project, "hpc", client, inside, outdir)
            check_gpu(client, gpu_job)
    finally:
        project.run("destroy", "--auto-approve", check=True)


def test_the_worker_groups_example_runs_end_to_end(project: Project) -> None:
    """examples/worker-groups, copied as a user would: plans with three groups, routes by
    tag, the container's outputs land on the host; the gpu group advertises GPU=1."""
    import sys

    repo = Path(__file__).resolve().parents[2]
    ex = project.root / "worker-groups"
    shutil.copytree(repo / "examples" / "worker-groups", ex,
                    ignore=shutil.ignore_patterns("data", ".scalable"))
    env = {**os.environ, "WORKER_GROUPS_DATA": str(ex / "data")}
    (ex / "data" / "inputs").mkdir(parents=True)
    (ex / "data" / "outputs").mkdir()
    shown = subprocess.run([sys.executable, "-m", "scalable", "plan", "--show-scripts"],
                           cwd=ex, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    gpu = shown.stdout.split("# ---- workers.gpu[0]: command ----\n", 1)[1].splitlines()[0]
    assert "--resources 'tag-gpu=1 GPU=1'" in gpu  # one flag: tag routing and GPU=1
    assert "model: 1 worker(s) [tags: model], bwrap image /" in shown.stdout
    out = subprocess.run([sys.executable, "run.py"], cwd=ex, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "model outputs: ['ssp1.txt', 'ssp2.txt', 'ssp5.txt']" in out.stdout
    assert (ex / "data" / "outputs" / "ssp2.txt").read_text() == \
        "energy ssp2 years=2020-2100\n"
    state = json.loads((ex / ".scalable" / "local" / "state.json").read_text())
    assert [r for r in state["resources"] if r["status"] != "deleting"] == []
