"""Imports point one way: the state package never imports providers, the CLI, the engine
or the manifest at run time (issue 12: state/s3.py used to import the AWS provider)."""

from __future__ import annotations

import ast
from pathlib import Path

STATE = Path(__file__).resolve().parents[2] / "state"
FORBIDDEN = ("scalable.providers", "scalable.cli", "scalable.engine", "scalable.workspace",
             "scalable.manifest", "scalable.planning")


def runtime_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_state_imports_nothing_above_it() -> None:
    modules = sorted(STATE.glob("*.py"))
    assert len(modules) >= 6
    for path in modules:
        bad = {m for m in runtime_imports(path) if m.startswith(FORBIDDEN)}
        assert not bad, f"{path.name} imports {sorted(bad)}"
