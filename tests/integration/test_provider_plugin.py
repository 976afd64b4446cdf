"""A provider installed through the ``scalable.providers`` entry point is usable from a
manifest: its own keys validate (with line-numbered errors), its offline checks run at
``validate``, and ``plan`` plans its resources (issue 12).

The package (tests/fakes/plugin) is "installed" the way pip leaves a package: the module
plus a ``*.dist-info`` folder with ``entry_points.txt``, in a folder on the path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from scalable.cli import main
from scalable.manifest.schema import manifest_model, target_model

PLUGIN = Path(__file__).resolve().parents[1] / "fakes" / "plugin"

MANIFEST = """
    targets:
      shop:
        provider: tiny
        cone: waffle
        max_workers: 2
        groups:
          choc: {flavour: chocolate, max_workers: 1}
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site folder holding the installed plug-in, on sys.path (and PYTHONPATH)."""
    root = tmp_path / "site"
    shutil.copytree(PLUGIN / "scalable_tiny", root / "scalable_tiny")
    info = root / "scalable_tiny-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scalable-tiny\nVersion: 0.1.0\n")
    shutil.copy(PLUGIN / "entry_points.txt", info / "entry_points.txt")
    monkeypatch.syspath_prepend(str(root))
    yield root
    target_model.cache_clear()
    manifest_model.cache_clear()
    sys.modules.pop("scalable_tiny", None)


def _run(cwd: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "NO_COLOR": "1", "CI": "1"}
    return subprocess.run(
        [sys.executable, "-m", "scalable", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plugin_provider_validates_and_plans(site: Path, tmp_path: Path) -> None:
    (tmp_path / "scalable.yaml").write_text(textwrap.dedent(MANIFEST).lstrip())
    proc = _run(tmp_path, site, "validate")
    assert proc.returncode == 0, proc.stderr
    assert "shop: provider tiny, workers default=2, choc=1" in proc.stdout
    proc = _run(tmp_path, site, "plan", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"workers.choc[0]"' in proc.stdout and '"chocolate"' in proc.stdout
    proc = _run(tmp_path, site, "plan", "--detailed-exitcode")
    assert proc.returncode == 2, proc.stderr
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in proc.stdout
    proc = _run(tmp_path, site, "schema")
    assert proc.returncode == 0 and '"chocolate"' in proc.stdout and '"cone"' in proc.stdout


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            ("cone: waffle", "cone: plastic"),
            "scalable.yaml:4:11: targets.shop.cone: Input should be 'waffle' or 'cup'",
        ),
        (
            ("max_workers: 2", "max_workers: 4"),
            "targets.shop.max_workers: 4 is above this provider's limit of 3",
        ),
        (
            ("{flavour: chocolate", "{flavor: chocolate"),
            "targets.shop.groups.choc.flavor: unknown key",
        ),
        (("cone: waffle", "cone: cup"), "chocolate is served in a waffle cone only"),
    ],
)
def test_plugin_keys_are_checked(
    site: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: tuple[str, str],
    needle: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scalable.yaml").write_text(textwrap.dedent(MANIFEST).lstrip().replace(*change))
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert needle in err
    assert "bug" not in err
    if "flavor" in needle:
        assert "did you mean 'flavour'?" in err


def test_a_provider_that_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scalable.yaml").write_text(textwrap.dedent(MANIFEST).lstrip())
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert "scalable.yaml:3:15: targets.shop.provider: unknown provider 'tiny'" in err
    assert "local, slurm, aws, gke" in err


def test_the_reference_example_defines_a_provider() -> None:
    """docs/reference/manifest.rst's plug-in example is code that runs."""
    from tests.integration.test_docs import python_blocks

    (block,) = python_blocks(
        Path(__file__).resolve().parents[2] / "docs" / "reference" / "manifest.rst"
    )
    scope: dict[str, object] = {"__name__": "__docs__"}
    exec(compile(block, "manifest.rst", "exec"), scope)
    cls = scope["TinyProvider"]
    assert cls.target_model.model_fields["cone"].default == "waffle"  # type: ignore[attr-defined]
    assert cls.group_model.MAX_WORKERS == 3  # type: ignore[attr-defined]
