"""Files holding environment values, tokens or keys are private (issue 11, item 4)."""

from __future__ import annotations

import os
import stat
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from scalable.manifest.loader import load_manifest
from scalable.private_files import private_dir, write_private
from scalable.providers.base import CreateContext
from scalable.providers.slurm import SlurmProvider
from scalable.spec import build_target
from scalable.state.model import StateFile
from scalable.state.store import LocalStore

LINEAGE = "0123abcd-4567-89ef-0123-456789abcdef"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """The usual default umask: without care, files are 0644 in 0755 folders."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_write_private_makes_every_new_folder_0700_and_the_file_0600(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir(mode=0o755)
    path = project / ".scalable" / "hpc" / "jobs" / "x.sbatch"
    write_private(path, "export TOKEN=secret\n")
    assert mode(path) == 0o600
    for folder in (path.parent, path.parent.parent, project / ".scalable"):
        assert mode(folder) == 0o700, folder
    assert mode(project) == 0o755  # the project folder is the user's, left alone


def test_private_dir_tightens_a_scalable_folder_left_open(tmp_path: Path) -> None:
    (tmp_path / ".scalable" / "hpc").mkdir(parents=True, mode=0o755)
    os.chmod(tmp_path / ".scalable", 0o755)
    private_dir(tmp_path / ".scalable" / "hpc" / "logs")
    assert mode(tmp_path / ".scalable") == 0o700
    assert mode(tmp_path / ".scalable" / "hpc") == 0o700


def test_slurm_job_script_with_env_values_is_private(tmp_path: Path) -> None:
    (tmp_path / "scalable.yaml").write_text(
        textwrap.dedent("""\
        targets:
          hpc:
            provider: slurm
            max_workers: 1
            env: {API_TOKEN: "s3cr3t"}
        """)
    )
    spec = build_target(load_manifest(tmp_path / "scalable.yaml"), "hpc")
    provider = SlurmProvider(spec, spec.workdir)
    res = next(r for r in provider.desired() if r.address == "workers.default[0]")
    ctx = CreateContext(
        lineage=LINEAGE,
        idempotency_key=f"{LINEAGE[:8]}-w-feedbeef",
        target="hpc",
        project="p",
        outputs={"scheduler_address": "tcp://127.0.0.1:8786"},
    )
    path, _ = provider._write_script(res, ctx)
    assert "s3cr3t" in path.read_text()
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700  # jobs/
    assert mode(spec.workdir) == 0o700  # .scalable/hpc
    assert mode(spec.workdir.parent) == 0o700  # .scalable


def test_state_folder_and_lock_are_private(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / ".scalable" / "local")
    with store.lock("apply"):
        store.write(StateFile(target="local", provider="local"))
    assert mode(store.path) == 0o600 and mode(store.lock_path) == 0o600
    assert mode(store.folder) == 0o700 and mode(store.folder.parent) == 0o700
