"""``env:`` cannot become shell code (issue 11, item 16).

Names are POSIX names, checked at load; values are quoted wherever they are written into
a script (Slurm job scripts, EC2 user data) and reach Dask in EC2 container mode through
``docker run -e``. The property tests run the real generated scripts with bash, with a
stand-in for the Python interpreter (and for docker) that records the environment Dask
would get: for arbitrary values, Dask sees exactly the value and nothing else runs.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scalable.errors import ScalableError
from scalable.manifest.loader import load_manifest
from scalable.providers.aws.bootstrap import ec2_user_data
from scalable.providers.commands import export_lines
from scalable.providers.slurm import SlurmProvider
from scalable.spec import build_target

LINEAGE = "0123abcd-4567-89ef-0123-456789abcdef"
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: (
        not n.startswith(("SCALABLE_", "SLURM_", "BASH"))
        and n.upper()
        not in {
            "PATH",
            "HOME",
            "PWD",
            "OLDPWD",
            "SHLVL",
            "IFS",
            "PS4",
            "TMPDIR",
            "_",
            "D",
            "PY",
            "ON_EXIT",
            "SCHED",
            "PORT",
            "DASHBOARD_PORT",
            "ENV",
            "CDPATH",
            "SHELLOPTS",
            "BASHOPTS",
            "GLOBIGNORE",
            "HOSTNAME",
            "UID",
            "EUID",
            "PPID",
            "RANDOM",
            "SECONDS",
            "LINENO",
            "OPTIND",
            "OPTARG",
            "FUNCNAME",
            "GROUPS",
            "HISTFILE",
            "MAIL",
            "MAILPATH",
            "TERM",
            "LANG",
            "LC_ALL",
            "LC_CTYPE",
            "TZ",
        }
    )
)
# Any text an environment can hold: everything but NUL (and lone surrogates, which
# cannot be encoded).
VALUES = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40
)
ENVS = st.dictionaries(NAMES, VALUES, max_size=4)

# Stands in for python (Slurm, EC2 native) or docker (EC2 container mode): writes the
# environment it was given to $SCALABLE_DUMP as JSON. For docker it passes on only the
# names given with ``-e NAME``, as docker does.
DUMPER = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    env = dict(os.environ)
    if os.path.basename(sys.argv[0]) == "docker":
        args = sys.argv[1:]
        names = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-e"]
        env = {{n: os.environ[n] for n in names if n in os.environ}}
    out = os.environ["SCALABLE_DUMP"]
    with open(out + ".tmp", "w") as fh:
        json.dump({{"env": env, "argv": sys.argv[1:]}}, fh)
    os.replace(out + ".tmp", out)
    """)


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sys

    d = tmp_path_factory.mktemp("bin")
    for name in ("fakepython", "docker"):
        p = d / name
        p.write_text(DUMPER.format(python=sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    (d / "shutdown").write_text("#!/bin/sh\nexit 0\n")
    (d / "shutdown").chmod(0o755)
    (d / "systemctl").write_text("#!/bin/sh\nexit 0\n")
    (d / "systemctl").chmod(0o755)
    return d


def manifest(tmp: Path, body: str) -> Path:
    path = tmp / "scalable.yaml"
    path.write_text(textwrap.dedent(body))
    return path


# -- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["X=1; echo pwned #", "A\n", "1ABC", "A-B", "", "$(id)", "A B", "é"]
)
def test_a_non_posix_name_is_refused_at_load_on_one_line(tmp_path: Path, name: str) -> None:
    path = manifest(
        tmp_path,
        f"""\
        targets:
          hpc:
            provider: slurm
            env: {{{json.dumps(name)}: v}}
        """,
    )
    with pytest.raises(ScalableError) as err:
        load_manifest(path)
    text = str(err.value.message)
    assert "not a POSIX name" in text and "\n" not in text
    assert text.startswith("scalable.yaml:4:")


def test_posix_names_load_and_nul_values_do_not(tmp_path: Path) -> None:
    ok = manifest(
        tmp_path,
        """\
        targets:
          hpc: {provider: slurm, env: {_A1: "x", lower_case: "y"}}
        """,
    )
    assert build_target(load_manifest(ok), "hpc").env == {"_A1": "x", "lower_case": "y"}
    bad = manifest(
        tmp_path,
        """\
        targets:
          hpc: {provider: slurm, env: {A: "x\\0y"}}
        """,
    )
    with pytest.raises(ScalableError, match="NUL"):
        load_manifest(bad)


def test_export_lines_refuse_a_name_that_slipped_past_the_manifest() -> None:
    with pytest.raises(ValueError):
        export_lines({"X=1; id #": "v"})


# -- values, through the real scripts --------------------------------------------------


def slurm_script(tmp: Path, env: dict[str, str], python: Path) -> str:
    path = tmp / "scalable.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        targets:
          hpc:
            provider: slurm
            max_workers: 1
            python: {python}
        """)
    )
    spec = build_target(load_manifest(path), "hpc")
    spec = type(spec)(**{**spec.__dict__, "env": env})
    p = SlurmProvider(spec, spec.workdir)
    res = next(r for r in p.desired() if r.address == "workers.default[0]")
    text = p.job_script(res, lineage=LINEAGE, key="k", scheduler_address="tcp://127.0.0.1:1")
    assert text is not None
    return text


def run(script: str, tmp: Path, bin_dir: Path, extra: dict[str, str]) -> dict[str, object]:
    dump = tmp / "dump.json"
    dump.unlink(missing_ok=True)
    canary = tmp / "pwned"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp),
        "TMPDIR": str(tmp),
        "SLURM_JOB_ID": "7",
        "SCALABLE_DUMP": str(dump),
        **extra,
    }
    subprocess.run(["bash", "-n"], input=script.encode(), check=True)
    subprocess.run(
        ["bash", "-s"],
        input=script.encode(),
        env=env,
        cwd=tmp,
        check=True,
        timeout=60,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60  # user data starts Dask in the background
    while not dump.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    data: dict[str, object] = json.loads(dump.read_text())
    assert not canary.exists()
    return data


PROPERTY = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(env=ENVS)
def test_slurm_job_script_gives_dask_exactly_the_values(
    tmp_path: Path, bin_dir: Path, env: dict[str, str]
) -> None:
    script = slurm_script(tmp_path, env, bin_dir / "fakepython")
    got = run(script, tmp_path, bin_dir, {})
    seen = got["env"]
    assert isinstance(seen, dict)
    assert {k: seen.get(k) for k in env} == env


@PROPERTY
@given(env=ENVS, container=st.booleans())
def test_ec2_user_data_gives_dask_exactly_the_values(
    tmp_path: Path, bin_dir: Path, env: dict[str, str], container: bool
) -> None:
    script = ec2_user_data(
        role="worker",
        address="workers.default[0]",
        target="aws",
        dask_args=["-c", "pass"],
        scheduler_address="tcp://127.0.0.1:1",
        tls=None,
        container_image="ghcr.io/dask/dask:x" if container else None,
        env=env,
    )
    got = run(
        script,
        tmp_path,
        bin_dir,
        {
            "SCALABLE_DIR": str(tmp_path / "d"),
            "SCALABLE_PYTHON": str(bin_dir / "fakepython"),
            "SCALABLE_ON_EXIT": "true",
        },
    )
    seen = got["env"]
    assert isinstance(seen, dict)
    assert {k: seen.get(k) for k in env} == env
    if container:
        assert set(seen) == set(env)  # only what -e names reaches the container


def test_injection_attempts_in_values_stay_values(tmp_path: Path, bin_dir: Path) -> None:
    canary = tmp_path / "pwned"
    evil = {
        "A": f"$(touch {canary})",
        "B": f"`touch {canary}`",
        "C": f"'; touch {canary}; '",
        "D_": f"\ntouch {canary}\n",
        "E": "${HOME}",
    }
    got = run(slurm_script(tmp_path, evil, bin_dir / "fakepython"), tmp_path, bin_dir, {})
    assert {k: got["env"].get(k) for k in evil} == evil  # type: ignore[union-attr]
    assert not canary.exists()
    assert os.listdir(tmp_path)  # the script did run
