"""Container runtimes: each one's command line (golden files), the manifest's container
block (one-line errors), inheritance target → group, and quoting in job scripts
(Hypothesis: hostile values come back out of bash as the same argv)."""

from __future__ import annotations

import os
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scalable.errors import ManifestError
from scalable.manifest.loader import load_manifest
from scalable.manifest.schema import ContainerConfig
from scalable.providers import containers
from scalable.providers.slurm import script as scripts
from scalable.spec import build_target

GOLDEN = Path(__file__).parent / "golden"
WORKER = ["python3", "-m", "distributed.cli.dask_worker", "tls://10.0.0.1:8786",
          "--name", "workers.energy[0]", "--nthreads", "2"]
SPEC = {
    "image": "IMAGE",
    "binds": {"/shared/inputs": "/data/in", "/scratch/out put": "/data/out"},
    "env": {"OMP_NUM_THREADS": "2", "MODEL": "gcam 'v7'"},
    "options": ["--cap-drop", "ALL"],
}
IMAGES = {"apptainer": "/images/energy.sif", "singularity": "docker://ghcr.io/org/energy:1",
          "docker": "ghcr.io/org/energy:1", "podman": "ghcr.io/org/energy:1",
          "bwrap": "/images/energy-rootfs"}


@pytest.mark.parametrize("runtime", sorted(IMAGES))
def test_each_runtime_command_line_matches_its_golden_file(runtime: str) -> None:
    c = ContainerConfig.model_validate({**SPEC, "runtime": runtime, "image": IMAGES[runtime]})
    argv = containers.wrap(c, WORKER, system=["/home/u/.scalable/hpc"],
                           passthrough=["SCALABLE_TARGET", "MODEL"])
    text = "\n".join(argv) + "\n"  # one argv item per line: the file is the argv
    path = GOLDEN / f"container_{runtime}.txt"
    if os.environ.get("SCALABLE_REGOLD") or not path.exists():
        path.write_text(text)
    assert text == path.read_text()
    assert argv[-len(WORKER):] == WORKER  # the worker command is untouched, at the end


def test_no_container_leaves_the_command_alone() -> None:
    assert containers.wrap(None, WORKER, system=["/x"]) == WORKER
    assert containers.python_for(None, "/venv/bin/python") == "/venv/bin/python"
    host = ContainerConfig(runtime="bwrap", image="/")
    assert containers.python_for(host, "/venv/bin/python") == "/venv/bin/python"
    other = ContainerConfig(runtime="podman", image="ghcr.io/dask/dask")
    assert containers.python_for(other, "/venv/bin/python") == "python3"


def test_bwrap_over_this_host_binds_back_an_interpreter_under_tmp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # bwrap gives the worker a private /tmp: a virtualenv (and an editable install's
    # path) there would vanish; they are bound back read-only, the outermost once.
    venv = tmp_path / "venv"
    (venv / "lib" / "site-packages").mkdir(parents=True)
    monkeypatch.setattr(containers.sys, "prefix", str(venv))
    monkeypatch.setattr(containers.sys, "path",
                        [str(venv / "lib" / "site-packages"), "/usr/lib/python3", "",
                         str(tmp_path / "missing")])
    argv = containers.wrap(ContainerConfig(runtime="bwrap", image="/"), WORKER)
    binds = [argv[i + 1] for i, a in enumerate(argv) if a == "--ro-bind"]
    assert binds == ["/", str(venv.resolve())]
    # A root filesystem image is not this host's: nothing of it is bound.
    image = ContainerConfig(runtime="bwrap", image=str(tmp_path))
    assert [a for a in containers.wrap(image, WORKER) if a == "--ro-bind"] == ["--ro-bind"]


def test_oci_runtimes_pass_provider_env_by_name_only() -> None:
    c = ContainerConfig(runtime="podman", image="img", env={"A": "1"})
    argv = containers.wrap(c, WORKER, passthrough=["SECRETISH", "A"])
    assert argv[argv.index("SECRETISH") - 1] == "-e"  # value read from the environment
    assert "A=1" in argv and "A" not in argv  # the container's own value wins


# -- the manifest block -------------------------------------------------------------------


def load(tmp_path: Path, body: str) -> object:
    path = tmp_path / "scalable.yaml"
    path.write_text(textwrap.dedent(body).lstrip())
    return load_manifest(path)


def err(tmp_path: Path, body: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(tmp_path, body)
    e = info.value
    assert "\n" not in str(e) and e.hint
    return e


@pytest.mark.parametrize(("block", "where", "words"), [
    ("{runtime: bwrap, image: /, binds: {relative/in: /in}}", "container.binds",
     "is not absolute"),
    ("{runtime: bwrap, image: /, binds: {/in: data}}", "container.binds", "is not absolute"),
    ("{runtime: podman, image: x, binds: {'/a:b': /in}}", "container.binds", "':' or ','"),
    ("{runtime: podman, image: x, binds: {/a/../etc: /in}}", "container.binds", "'..'"),
    ("{runtime: podman, image: x, binds: {/a: /in, /b: /in}}", "container",
     "both mount on '/in'"),
    ("{runtime: podman, image: x, binds: {/a: /}}", "container", "cannot be '/'"),
    ("{runtime: podman, image: x, env: {'X; rm -rf /': '1'}}", "container.env",
     "not a POSIX name"),
    ("{runtime: podman, image: x, options: '--cap-drop ALL'}", "container.options",
     "not a shell string"),
    ("{runtime: podman, image: x, options: [\"a\\nb\"]}", "container.options[0]",
     "line break"),
    ("{runtime: podman}", "container", "needs an image"),
    ("{runtime: apptainer, image: x.sif, env: {A: 'a,b'}}", "container", "cannot carry ','"),
    ("{runtime: bwrap, image: rootfs}", "container", "not an absolute path"),
    ("{runtime: none, image: x}", "container", "runtime: none runs no container"),
    ("{runtime: lxc, image: x}", "container.runtime", "Input should be"),
    ("{runtime: podman, image: x, volumes: {}}", "container.volumes", "unknown key"),
])
def test_bad_container_blocks_are_one_line_errors_naming_the_key(
        tmp_path: Path, block: str, where: str, words: str) -> None:
    e = err(tmp_path, f"""
        targets:
          local:
            provider: local
            groups:
              energy:
                container: {block}
        """)
    assert "scalable.yaml:6:" in str(e) or "scalable.yaml:7:" in str(e), str(e)
    assert f"targets.local.groups.energy.{where}" in str(e)
    assert words in str(e)


def test_old_and_new_spelling_together_are_refused(tmp_path: Path) -> None:
    e = err(tmp_path, """
        targets:
          hpc:
            provider: slurm
            containers: apptainer
            image: /images/a.sif
            container: {runtime: apptainer, image: /images/b.sif}
        """)
    assert "set either container:" in str(e)


def test_groups_inherit_the_target_container_and_may_replace_or_drop_it(tmp_path: Path) -> None:
    m = load(tmp_path, """
        targets:
          hpc:
            provider: slurm
            container: {runtime: apptainer, image: /images/base.sif, binds: {/data: /data}}
            groups:
              plain: {container: {runtime: none}}
              inherits: {tags: [x]}
              own: {container: {runtime: bwrap, image: /, binds: {/in: /tmp/in}}}
        """)
    spec = build_target(m, "hpc")  # type: ignore[arg-type]
    got = {g.name: g.container for g in spec.groups}
    assert got["plain"] is None
    assert got["inherits"] is not None and got["inherits"].image == "/images/base.sif"
    assert got["own"] is not None and got["own"].runtime == "bwrap"
    assert dict(got["own"].binds) == {"/in": "/tmp/in"}  # replaced as a whole, not merged


def test_the_older_keys_are_the_default_container(tmp_path: Path) -> None:
    m = load(tmp_path, """
        targets:
          hpc:
            provider: slurm
            containers: apptainer
            image: docker://ghcr.io/dask/dask:2026.8.0
            groups: {a: {}, b: {container: {runtime: podman, image: ghcr.io/x/y:1}}}
        """)
    spec = build_target(m, "hpc")  # type: ignore[arg-type]
    a, b = spec.group("a").container, spec.group("b").container
    assert a is not None and (a.runtime, a.image) == ("apptainer",
                                                       "docker://ghcr.io/dask/dask:2026.8.0")
    assert b is not None and b.runtime == "podman"


# -- quoting: hostile values survive a job script unchanged ----------------------------------

_text = st.text(alphabet=st.characters(blacklist_characters="\x00",
                                       blacklist_categories=("Cs",)),
                max_size=24)
_line = _text.filter(lambda s: "\n" not in s and "\r" not in s)
_hostile = st.sampled_from(["a b", "'", '"', "$(touch /tmp/pwned)", "`id`", "; rm -rf /",
                            "$HOME", "\\", "&&", "|", "*", "~", "#x", "{a,b}", "${X:-y}"])
_piece = st.one_of(_hostile, _line)
_path = st.lists(_piece.map(lambda s: s.replace("/", "").replace(":", "").replace(",", "")
                            .replace("\n", "").replace("\r", "").strip("."))
                 .filter(lambda s: s not in ("", "..")),
                 min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
_env_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)


@settings(max_examples=80)
@given(runtime=st.sampled_from(["apptainer", "podman", "docker", "bwrap"]),
       image=st.one_of(_path, _hostile.map(lambda s: "/" + s)),
       binds=st.dictionaries(_path, _path, max_size=3),
       env=st.dictionaries(_env_name, st.one_of(_hostile, _text), max_size=3),
       options=st.lists(st.one_of(_hostile, _line), max_size=3))
def test_hostile_container_values_never_break_out_of_the_job_script(
        runtime: str, image: str, binds: dict[str, str], env: dict[str, str],
        options: list[str]) -> None:
    if runtime == "apptainer":  # its --env splits at ',' (refused by the schema)
        env = {k: v for k, v in env.items() if "," not in v and "\n" not in v}
    inside = {}
    for src, dst in binds.items():  # distinct container paths, as the schema requires
        if dst not in inside.values() and dst.rstrip("/"):
            inside[src] = dst
    c = ContainerConfig.model_validate({"runtime": runtime, "image": image,
                                        "binds": inside, "env": env, "options": options})
    argv = containers.wrap(c, WORKER, system=["/home/u/.scalable/hpc", scripts.LOCAL_DIR],
                           passthrough=["SCALABLE_TARGET"])
    shape = scripts.JobShape(
        job_name="scalable-0123abcd-energy-0", comment="scalable;lineage=x;address=y;key=z",
        wckey="scalable-0123abcd", partition=None, account=None, walltime=600, cores=1,
        memory=None, log_directory="/home/u/.scalable/hpc/logs", worker_command=argv,
        env={"SCALABLE_TARGET": "hpc"})
    text = scripts.render(shape)
    # The command is everything after the prologue's last line; parsed back with shlex it
    # is the argv we built (run-time tokens such as the job's local dir stay as written).
    marker = "trap 'rm -rf \"$SCALABLE_LOCAL_DIR\"' EXIT\n"
    assert text.count(marker) == 1
    assert shlex.split(text.split(marker, 1)[1]) == argv
    # And bash itself sees the same words (the run-time tokens expanded, nothing else).
    probe = text.split(marker, 1)[1].strip()
    out = subprocess.run(["bash", "-c", f"set -- {probe}\nprintf '%s\\0' \"$@\""],
                         capture_output=True, env={"TMPDIR": "/t", "SLURM_JOB_ID": "7",
                                                   "PATH": os.environ["PATH"]}, check=True)
    local = "/t/scalable-7"
    expect = [a.replace(scripts.LOCAL_DIR, local) for a in argv]
    assert out.stdout.decode().split("\0")[:-1] == expect


# -- what plan shows ------------------------------------------------------------------------


def test_plan_shows_each_group_runtime_image_and_binds_and_saves_them(tmp_path: Path) -> None:
    from scalable.planning.diff import group_summary
    from scalable.planning.model import Cost, Plan
    from scalable.planning.render import render_plan

    m = load(tmp_path, """
        targets:
          local:
            provider: local
            groups:
              cpu: {max_workers: 2, tags: [post]}
              model:
                tags: [model]
                container:
                  runtime: bwrap
                  image: /
                  binds: {/srv/in: /tmp/in}
                  env: {SECRET_TOKEN: hunter2}
                  options: [--unshare-ipc]
        """)
    spec = build_target(m, "local")  # type: ignore[arg-type]
    plan = Plan(target="local", provider="local", lineage=None, serial=0,
                manifest_digest="sha256:x", destroy=False, changes=[], drift=[],
                cost=Cost(hourly_now=0.0, hourly_after=0.0, horizon_hours=None),
                groups=[group_summary(g) for g in spec.groups])
    text = render_plan(plan)
    lines = text.splitlines()
    start = lines.index("Worker groups:")
    assert lines[start:start + 6] == [
        "Worker groups:",
        "  cpu: 2 worker(s) [tags: post], plain processes",
        "  model: 1 worker(s) [tags: model], bwrap image /",
        "      bind /srv/in → /tmp/in",
        "      env SECRET_TOKEN",
        "      options --unshare-ipc",
    ]
    assert "hunter2" not in text and "hunter2" not in str(plan.to_dict())
    again = Plan.from_dict(plan.to_dict())
    assert again.groups == plan.groups
    assert plan.to_dict()["format_version"] == "1.2"
