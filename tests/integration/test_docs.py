"""The docs' Python tutorial blocks run, against a project like the repository's."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import Project, our_processes

DOCS = Path(__file__).resolve().parents[2] / "docs"
REPO = DOCS.parent


def python_blocks(rst: Path) -> list[str]:
    text = rst.read_text()
    blocks = []
    for m in re.finditer(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text):
        blocks.append("\n".join(line[3:] for line in m.group(1).splitlines()))
    return blocks


@pytest.mark.slow
def test_getting_started_python_block_runs(project: Project,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(REPO / "scalable.yaml", project.root / "scalable.yaml")
    monkeypatch.chdir(project.root)
    (block,) = python_blocks(DOCS / "getting-started.rst")
    exec(compile(block, "getting-started.rst", "exec"), {"__name__": "__docs__"})
    assert our_processes(project.root) == []


def test_readme_quick_start_commands_exist() -> None:
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in readme
        assert re.search(rf"^{target}:", makefile, re.M)


@pytest.mark.slow
def test_caching_guide_python_block_runs(project: Project,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(REPO / "scalable.yaml", project.root / "scalable.yaml")
    monkeypatch.chdir(project.root)
    monkeypatch.delenv("SCALABLE_CACHE_DIR", raising=False)
    monkeypatch.delenv("SCALABLE_CACHE_REMOTE", raising=False)
    (block,) = python_blocks(DOCS / "guides" / "caching.rst")
    exec(compile(block, "caching.rst", "exec"), {"__name__": "__docs__"})
    entries = [p for p in (project.root / ".scalable" / "cache").rglob("*")
               if p.is_file() and ".stats" not in p.parts]
    assert len(entries) == 8 + 2  # run_simulation(0..7) on workers, quick() twice here
    assert our_processes(project.root) == []
