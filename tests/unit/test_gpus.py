"""GPUs per group, without a Slurm: the manifest keys, the Dask resource every GPU worker
advertises, Slurm's ``--gres`` line and the plan's check against the partition's Gres."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from scalable.manifest.loader import load_manifest
from scalable.providers.base import ProviderError
from scalable.providers.commands import resources_for, worker_argv
from scalable.providers.slurm import SlurmProvider
from scalable.providers.slurm import commands as slurm
from scalable.providers.slurm.provider import gres
from scalable.spec import TargetSpec, build_target

LINEAGE = "0123abcd-4567-89ef-0123-456789abcdef"
SEP = slurm.SEP


def spec(tmp_path: Path, body: str, provider: str = "slurm") -> TargetSpec:
    path = tmp_path / "scalable.yaml"
    path.write_text(f"targets:\n  t:\n    provider: {provider}\n" + textwrap.indent(
        textwrap.dedent(body).strip() + "\n", "    "))
    return build_target(load_manifest(path), "t")


GROUPS = """
    gpu_type: fake
    groups:
      cpu: {tags: [cpu], max_workers: 2}
      gpu: {tags: [gpu], gpus: 2, processes: 1}
      pair: {tags: [pair], gpus: 1, processes: 2, gpu_type: a100}
"""


def test_a_gpu_worker_advertises_gpu_and_a_cpu_worker_does_not(tmp_path: Path) -> None:
    t = spec(tmp_path, GROUPS)
    assert resources_for(t.group("cpu")) == {"tag-cpu": 1.0}
    assert resources_for(t.group("gpu")) == {"tag-gpu": 1.0, "GPU": 2.0}
    argv = worker_argv(t.group("pair"), "tcp://127.0.0.1:1", name="w")
    assert argv[argv.index("--resources") + 1] == "tag-pair=1 GPU=1"
    # gpu_type is the target's default, but only a group with GPUs has one.
    assert t.group("cpu").gpu_type is None and t.group("gpu").gpu_type == "fake"
    assert t.group("pair").gpu_type == "a100"


def test_slurm_gres_is_per_job_for_all_its_workers(tmp_path: Path) -> None:
    t = spec(tmp_path, GROUPS)
    assert gres(t.group("cpu")) is None
    assert gres(t.group("gpu")) == "gpu:fake:2"
    assert gres(t.group("pair")) == "gpu:a100:2"  # 2 workers × 1 GPU in one job
    untyped = spec(tmp_path, "gpus: 1\nmax_workers: 1")
    assert gres(untyped.group("default")) == "gpu:1"


def test_slurm_script_and_plan_attributes_carry_the_gres(tmp_path: Path) -> None:
    t = spec(tmp_path, GROUPS)
    p = SlurmProvider(t, t.workdir)
    res = {r.address: r for r in p.desired()}
    gpu, cpu = res["workers.gpu[0]"], res["workers.cpu[0]"]
    assert gpu.attributes["gpus"] == 2 and gpu.attributes["gpu_type"] == "fake"
    assert "gpus" not in cpu.attributes  # a CPU job's attributes are as before
    text = p.job_script(gpu, lineage=LINEAGE, key="k", scheduler_address="tls://h:1")
    assert text is not None and "#SBATCH --gres=gpu:fake:2\n" in text
    assert "--resources 'tag-gpu=1 GPU=2'" in text
    cpu_text = p.job_script(cpu, lineage=LINEAGE, key="k", scheduler_address="tls://h:1")
    assert cpu_text is not None and "--gres" not in cpu_text and "GPU=" not in cpu_text
    assert "--gres=gpu:fake:2" in p._test_options(t.group("gpu"))


def test_parse_gres_reads_types_counts_and_ignores_the_rest() -> None:
    assert slurm.parse_gres("gpu:fake:2") == {"fake": 2}
    assert slurm.parse_gres("gpu:a100:4(S:0-1),gpu:v100:2,shard:8") == {"a100": 4, "v100": 2}
    assert slurm.parse_gres("gpu:2") == {"": 2}
    assert slurm.parse_gres("(null)") == {} and slurm.parse_gres("") == {}
    parts = slurm.parse_sinfo(f"debug*{SEP}30:00{SEP}up{SEP}8{SEP}gpu:fake:2\n"
                              f"cpu{SEP}30:00{SEP}up{SEP}8{SEP}(null)")
    assert parts["debug"].gpus == {"fake": 2} and parts["cpu"].gpus == {}


def partition(gpus: dict[str, int], name: str = "debug") -> slurm.Partition:
    return slurm.Partition(name=name, default=True, max_time=None, available="up", cpus=8,
                           gpus=gpus)


def test_plan_refuses_a_gpu_type_or_count_the_partition_cannot_give(tmp_path: Path) -> None:
    t = spec(tmp_path, GROUPS)
    check = SlurmProvider._check_gpus
    check(t.group("gpu"), partition({"fake": 2}))  # fits
    with pytest.raises(ProviderError) as err:
        check(t.group("pair"), partition({"fake": 2, "v100": 4}))
    assert err.value.message == (
        "group pair: gpu_type 'a100' is not in partition debug (its GPU types: fake, v100)")
    with pytest.raises(ProviderError, match=r"group gpu: a job asks for 2 GPU\(s\) .* "
                                            r"partition debug has 1 \(sinfo Gres: fake:1\)"):
        check(t.group("gpu"), partition({"fake": 1}))
    with pytest.raises(ProviderError, match="partition cpu has no GPUs"):
        check(t.group("gpu"), partition({}, name="cpu"))


def test_bad_gpu_values_are_refused_at_load(tmp_path: Path) -> None:
    from scalable.errors import ScalableError

    with pytest.raises(ScalableError, match="gpu_type"):
        spec(tmp_path, "gpus: 1\ngpu_type: 'a100:2'\nmax_workers: 1")
    with pytest.raises(ScalableError, match="gpus"):
        spec(tmp_path, "gpus: -1\nmax_workers: 1")


def test_apptainer_gpu_groups_get_nv_and_the_plan_shows_each_groups_gpus(
        tmp_path: Path) -> None:
    from scalable.planning import diff
    from scalable.planning.render import render_plan

    t = spec(tmp_path, GROUPS + """
    container: {runtime: apptainer, image: /images/model.sif}
""")
    p = SlurmProvider(t, t.workdir)
    argv = p.in_container(t.group("gpu"), ["python3", "-m", "distributed.cli.dask_worker"])
    assert argv[:3] == ["apptainer", "exec", "--nv"]  # apptainer hides GPUs without it
    cpu = p.in_container(t.group("cpu"), ["python3"])
    assert cpu[:2] == ["apptainer", "exec"] and "--nv" not in cpu
    plan = diff.make_plan(p, None, "d", refresh=False)
    by_name = {g["name"]: g for g in plan.to_dict(detail=False)["groups"]}
    assert (by_name["pair"]["gpus"], by_name["pair"]["gpu_type"]) == (1, "a100")
    assert (by_name["cpu"]["gpus"], by_name["cpu"]["gpu_type"]) == (0, None)
    text = render_plan(plan)
    assert "  gpu: 1 worker(s) with 2 fake GPU(s) each [tags: gpu], apptainer image" in text
    assert "  cpu: 2 worker(s) [tags: cpu], apptainer image" in text
