"""The ``scalable`` command: a thin face over the engine (see scalable.session)."""

from __future__ import annotations

import gc
import os
import sys

import click
from scalable._version import __version__
from scalable.cli.common import Ctx, ScalableGroup

# name -> (module, attribute, one-line help). A command's module is imported only when
# that command runs (or its own --help is asked): building every command would import
# the engine, the manifest schema and telemetry for `scalable --help`. The one-line help
# is kept here for the command list; a unit test checks it against each docstring.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "plan": ("scalable.cli.apply", "plan",
             "Show what apply would change, and what it would cost."),
    "apply": ("scalable.cli.apply", "apply", "Make the target's capacity match the manifest."),
    "destroy": ("scalable.cli.apply", "destroy",
                "Tear down everything this target's state holds."),
    "output": ("scalable.cli.outputs", "output",
               "Print the outputs of the last apply (scheduler_address, dashboard_url, …)."),
    "env": ("scalable.cli.outputs", "env",
            "Shell exports so a bare ``distributed.Client()`` connects: "
            'eval "$(scalable env)".'),
    "status": ("scalable.cli.outputs", "status",
               "Resources in state, their live status, and the workers the scheduler sees."),
    "report": ("scalable.cli.report", "report",
               "Summarise a run: workers, tasks, efficiency, tags, scaling decisions and cost."),
    "dashboard": ("scalable.cli.dashboard", "dashboard",
                  "Watch a target live (workers, work per tag, scaling decisions, cost), "
                  "or replay a run."),
    "validate": ("scalable.cli.manifest", "validate",
                 "Check the manifest: every error names its file, line, column and key."),
    "schema": ("scalable.cli.manifest", "schema",
               "Print the manifest's JSON Schema (for editors)."),
    "init": ("scalable.cli.manifest", "init", "Write a commented starter manifest."),
    "state": ("scalable.cli.state", "app", "Inspect and repair a target's state."),
    "cache": ("scalable.cli.cache", "app", "Show or clear the @cacheable result cache."),
    "import": ("scalable.cli.adopt", "import_",
               "Adopt an existing resource into state (checked against the backend)."),
    "sweep": ("scalable.cli.sweep", "sweep",
              "Find capacity scalable created that no state of this manifest holds (dry run)."),
}


# Commands whose modules never read a manifest (no PyYAML, no pydantic models).
_NO_MANIFEST = frozenset({"dashboard", "cache"})
# What every other command's module imports last and deepest: cli.apply → engine → diff
# → surgery → planning.model → providers.base → manifest → loader → yaml/pydantic sit ~60
# frames down. CPython 3.11 keeps a thread's frames in 16 KiB chunks and frees a chunk
# as soon as the frame that opened it returns, so a module body run across a chunk's
# edge maps and unmaps one per call: pydantic_core's ~200 TypedDicts and PyYAML's
# resolver regexes did so 2,400 times in a `plan` (2,500 more page faults, ~9% of its
# CPU). Imported first, from here, they run near the top of the stack and cross none.
_SHALLOW_FIRST = ("yaml", "pydantic.main", "pydantic.fields")


def load_command(name: str) -> click.Command:
    """Build the click command behind ``name`` (importing its module now)."""
    import importlib

    module, attr, _ = COMMANDS[name]
    if _StartUp.console:
        # Before anything generates code: dataclasses, ForwardRefs (codecache.py).
        from scalable.cli import codecache

        codecache.install(name)
    if name not in _NO_MANIFEST:
        for leaf in _SHALLOW_FIRST:
            importlib.import_module(leaf)
    cmd: click.Command = getattr(importlib.import_module(module), attr)
    cmd.name = name
    return cmd


class LazyGroup(ScalableGroup):
    """The top-level group: lists commands from ``COMMANDS``, builds one when used.

    A ``ScalableGroup``: usage errors exit 1 and errors become one ``Error:`` line the same
    way under CliRunner and the real entry point."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        cmd = load_command(cmd_name)
        _started()
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in COMMANDS.items()])


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        click.echo(f"scalable {__version__}")
        ctx.exit()


@click.group(
    name="scalable",
    cls=LazyGroup,
    no_args_is_help=True,
    help="Plan, apply and destroy Dask capacity: local, Slurm, AWS, GKE.",
)
@click.option("--version", is_flag=True, callback=_version, expose_value=False, is_eager=True,
              help="Show the version.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("--no-color", is_flag=True, help="No ANSI colours.")
def app(debug: bool, no_color: bool) -> None:
    Ctx.debug = debug or bool(os.environ.get("SCALABLE_DEBUG"))
    Ctx.no_color = no_color


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors become one ``Error:`` line and a hint, never a traceback.

    ``_SCALABLE_COMPLETE=bash_source scalable`` (zsh_source, fish_source) prints click's
    shell completion script (docs/reference/cli.rst); click loads that code only then.
    """
    rc = app.main(args=argv, prog_name="scalable", complete_var="_SCALABLE_COMPLETE",
                  standalone_mode=False)  # ScalableGroup.main: an exit code
    return rc if isinstance(rc, int) else 0


class _StartUp:
    """How the console script starts (``run``); a process calling ``main`` sets neither."""

    paused = False  # the cyclic garbage collector is paused until the command is loaded
    console = False  # generated code comes from the code cache (cli/codecache.py)


def _started() -> None:
    """The command's code is loaded: what start-up made is kept for good; collect again.

    Start-up allocates little but modules, classes, functions and pydantic schemas, all
    kept until exit, so the collector's passes over them during the imports find nothing,
    and so does its last pass at exit. ``gc.freeze`` moves them where no collection
    looks (about 7% of a ``plan``'s instructions). Only the real entry point does this
    (``run``): ``main`` called in a process that goes on (tests) leaves the collector
    alone."""
    if _StartUp.paused:
        _StartUp.paused = False
        gc.freeze()
        gc.enable()


def run() -> None:
    """The console script (and ``python -m scalable``): ``main`` in a process of its own."""
    _StartUp.console = True
    if gc.isenabled():
        gc.disable()
        _StartUp.paused = True
    sys.exit(main())
