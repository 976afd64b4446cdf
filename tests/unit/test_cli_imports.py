"""The CLI's start-up stays light (issue 15): `--help` and `plan` on a local target load
none of the heavy libraries; each command's listed help matches its docstring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "distributed",
    "dask",
    "bokeh",
    "tornado",
    "boto3",
    "botocore",
    "google",
    "grpc",
    "textual",
    "rich",
    "kubernetes",
    "dask_jobqueue",
    "numpy",
    "pandas",
    "sqlite3",  # telemetry's database: `plan` records nothing
    # pydantic's plugin loader imports it (with email, zipfile, csv) even when plugins are
    # off: scalable builds its manifest model without it (manifest.schema)
    "importlib.metadata",
    "typer",  # the CLI is plain click now (issue 15): nothing may bring typer back
    "click.shell_completion",  # loaded only when the shell asks (_SCALABLE_COMPLETE)
    "click._termui_impl",  # pagers, progress bars, editors: no command of a plain run
    "psutil",  # on Linux a record's process is read from /proc (providers.procfs)
)
# scalable's own modules that `plan` on a local target must not need.
HEAVY_OWN = (
    "scalable.telemetry.store",
    "scalable.telemetry.report",
    "scalable.telemetry.plugin",
    "scalable.tui",
    "scalable.cache",
    "scalable.providers.slurm",
    "scalable.providers.aws",
    "scalable.providers.gke",
    "scalable.scaling.objectives",  # no objectives asked
    "scalable.providers.retire",  # apply's retirement of workers
)
# destroy records its steps (telemetry's typed events); plan records nothing. Nor does
# it start a process, pick a port, write a file or log (about 30 M instructions, 3%).
# subprocess came with typer; plain click does not need it.
HEAVY_FOR_PLAN = ("scalable.payloads", "logging", "socket", "tempfile", "subprocess")
# `--help` lists the commands from a table: none of the engine, nor pydantic.
HEAVY_FOR_HELP = ("pydantic", "yaml", "scalable.engine", "scalable.manifest", "psutil")

PROBE = """
import json, sys
from scalable.cli import main
rc = main(sys.argv[2:])
heavy = sorted(
    m for m in sys.modules
    if any(m == h or m.startswith(h + ".") for h in json.loads(sys.argv[1]))
)
print(json.dumps({"rc": rc, "heavy": heavy}))
"""


def _loaded(cwd: Path, heavy: tuple[str, ...], *args: str) -> tuple[str, list[str]]:
    """Run ``scalable *args`` in a fresh interpreter; its output and the ``heavy``
    modules (or their submodules) it loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(heavy), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "CI": "1", "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0, proc.stdout
    return proc.stdout, result["heavy"]


def test_plan_loads_no_heavy_module(tmp_path: Path) -> None:
    (tmp_path / "scalable.yaml").write_text(
        "targets:\n  local: {provider: local, max_workers: 2}\n"
    )
    out, heavy = _loaded(tmp_path, HEAVY + HEAVY_OWN + HEAVY_FOR_PLAN, "plan")
    assert "Plan: 3 to add" in out  # plan really ran
    assert heavy == [], f"heavy modules loaded by plan: {heavy}"


def test_plan_of_one_target_loads_only_the_other_providers_schemas(tmp_path: Path) -> None:
    """A manifest validates every target, but ``plan -t laptop`` runs one provider: the
    Slurm and AWS targets' keys come from their config modules, not their providers."""
    (tmp_path / "scalable.yaml").write_text(
        "targets:\n"
        "  laptop: {provider: local, max_workers: 1}\n"
        "  hpc: {provider: slurm, queue: batch, max_workers: 2}\n"
        "  cloud: {provider: aws, launch_type: ec2, region: us-east-1, max_workers: 1}\n"
        "  grid: {provider: sge, max_workers: 1}\n"
    )
    others = ("scalable.providers.slurm.provider", "scalable.providers.aws.provider",
              "scalable.providers.batch.provider", "scalable.providers.slurm.config",
              "scalable.providers.aws.config")
    own = tuple(m for m in HEAVY_OWN if m not in ("scalable.providers.slurm",
                                                  "scalable.providers.aws"))
    out, heavy = _loaded(tmp_path, HEAVY + own + others, "plan", "-t", "laptop")
    assert "Plan: 2 to add" in out  # plan really ran
    # The two config modules are loaded (every target is validated); nothing else is.
    assert heavy == ["scalable.providers.aws.config", "scalable.providers.slurm.config"], heavy


def test_each_builtins_listed_models_are_its_providers_own() -> None:
    from scalable.registry import BUILTIN, provider_class, provider_models

    for name in BUILTIN:
        cls = provider_class(name)
        assert provider_models(name) == (cls.target_model, cls.group_model), name


def test_destroy_with_nothing_to_destroy_loads_no_heavy_module(tmp_path: Path) -> None:
    (tmp_path / "scalable.yaml").write_text(
        "targets:\n  local: {provider: local, max_workers: 2}\n"
    )
    out, heavy = _loaded(tmp_path, HEAVY + HEAVY_OWN, "destroy", "--auto-approve")
    assert "Destroy complete!" in out
    assert heavy == [], f"heavy modules loaded by destroy: {heavy}"


def test_manifest_build_leaves_pydantic_plugins_to_later_models() -> None:
    """The manifest's build sees no plugin loader; a model built afterwards gets pydantic's
    real one (and with it the plugins the application installed)."""
    probe = """
import sys
from scalable.manifest.schema import target_model
target_model("local")
assert "importlib.metadata" not in sys.modules
assert "pydantic.plugin._loader" not in sys.modules
from pydantic import TypeAdapter
TypeAdapter(int)
from pydantic.plugin import _loader
assert _loader.get_plugins.__module__ == "pydantic.plugin._loader", _loader
assert "importlib.metadata" in sys.modules
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_help_loads_neither_the_engine_nor_pydantic(tmp_path: Path) -> None:
    out, heavy = _loaded(tmp_path, HEAVY + HEAVY_OWN + HEAVY_FOR_HELP, "--help")
    assert "Commands" in out and "plan" in out
    assert heavy == [], f"heavy modules loaded by --help: {heavy}"


def test_listed_help_matches_each_commands_docstring() -> None:
    from scalable.cli import COMMANDS, load_command

    for name, (_, _, listed) in COMMANDS.items():
        cmd = load_command(name)
        first = (cmd.help or "").strip().splitlines()[0]
        assert first == listed, f"{name}: COMMANDS says {listed!r}, the command {first!r}"


def test_the_entry_point_collects_again_once_the_command_is_loaded(tmp_path: Path) -> None:
    """``run`` pauses the cyclic collector for start-up only: the command itself runs with
    it on, start-up's objects frozen; ``main`` (called by tests, the session) leaves it be."""
    (tmp_path / "scalable.yaml").write_text("targets:\n  local: {provider: local}\n")
    probe = """
import atexit, gc, sys
from scalable.cli import main, run
main(["validate"])
assert gc.isenabled() and gc.get_freeze_count() == 0
atexit.register(lambda: print("gc", gc.isenabled(), gc.get_freeze_count() > 0))
sys.argv = ["scalable", "validate"]
run()
"""
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "CI": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "gc True True", proc.stdout


def test_commands_listed_as_manifest_free_load_no_manifest_stack() -> None:
    """``load_command`` skips its early yaml/pydantic import only for ``_NO_MANIFEST``:
    a command there whose module did read a manifest would import them deep in the
    stack again (issue 15: CPython 3.11's frame-chunk thrash)."""
    from scalable.cli import _NO_MANIFEST, COMMANDS

    for name in sorted(_NO_MANIFEST):
        probe = (
            "import sys, importlib; importlib.import_module(sys.argv[1]); "
            "print(sorted(m for m in ('yaml', 'pydantic.main') if m in sys.modules))"
        )
        proc = subprocess.run([sys.executable, "-c", probe, COMMANDS[name][0]],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "[]", f"{name}: {proc.stdout.strip()}"


def test_a_builtin_whose_extra_is_missing_is_named_with_its_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Schema or provider: a built-in whose module cannot be imported (its optional
    dependencies not installed) is an UnknownProvider that says which extra to install."""
    from scalable import registry

    monkeypatch.setitem(registry.BUILTIN, "aws", "scalable_no_such_module:AwsProvider")
    monkeypatch.setitem(registry.BUILTIN_MODELS, "aws", "scalable_no_such_module:T:G")
    for ask in (registry.provider_class, registry.provider_models):
        with pytest.raises(registry.UnknownProvider) as info:
            ask("aws")
        assert info.value.hint == "pip install 'scalable[aws]'", ask
