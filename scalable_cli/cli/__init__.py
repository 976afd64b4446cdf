"""The ``scalable`` command: a thin face over the engine (see scalable.session)."""

from __future__ import annotations

import functools
import gc
import os
import sys
from collections.abc import Iterable
from typing import Annotated, Any

import typer
from scalable._version import __version__
from scalable.cli.common import Ctx, ScalableGroup
from typer import _click as click  # typer >= 0.29 carries its own click
from typer.core import TyperCommand

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


def defer_coercion(params: Iterable[click.Parameter]) -> None:
    """Let typer build each option's value converter only when a value needs one.

    typer >= 0.29 converts every parameter through a pydantic ``TypeAdapter``, built on
    first use, and builds it even for an option left at ``None``: a bare ``scalable plan``
    built 14 of them, importing pydantic's ``types`` and typer's adapters for it (about
    40 ms, a quarter of its start). ``_Deferred`` answers ``None`` the way typer's own
    converter does (``RuntimeParam.coerce``: ``None``, or ``()`` for a repeatable one),
    passes a plain string to a plain ``str`` option unchanged (as typer's ``str`` adapter
    does), and builds typer's converter for anything else, so values, errors and messages
    stay typer's own. An older typer, without this machinery, is left as it is.
    """
    deferred = _deferred_class()
    if deferred is None:
        return
    for param in params:
        if getattr(param, "_runtime_param", False) is None:  # a typer parameter, unbuilt
            desc = param.type_descriptor  # type: ignore[attr-defined]
            param._runtime_param = deferred(  # type: ignore[attr-defined]
                parameter_info=desc.parameter_info, annotation=desc.annotation
            )


@functools.cache
def _deferred_class() -> type | None:
    try:
        from typer._coercion import RuntimeParam, build_runtime_param
    except ImportError:  # an older typer converts with click's own types
        return None

    class _Deferred(RuntimeParam):  # typer's fields; no new ones
        def _coerce_value(self, value: Any, param: Any, ctx: click.Context) -> Any:
            desc = param.type_descriptor
            if (
                type(value) is str
                and desc.annotation is str
                and desc.parameter_info.parser is None
                and not (desc.is_choice or desc.is_path or desc.is_file)
            ):
                return value
            param._runtime_param = real = build_runtime_param(desc)
            return real._coerce_value(value, param=param, ctx=ctx)

    return _Deferred


class ScalableCommand(TyperCommand):
    """One command: its parameters (``--help`` too) convert values as ``defer_coercion`` says."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        defer_coercion(params)
        return params


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
    if name not in _NO_MANIFEST:
        for leaf in _SHALLOW_FIRST:
            importlib.import_module(leaf)
    obj = getattr(importlib.import_module(module), attr)
    cmd: click.Command
    if isinstance(obj, typer.Typer):
        obj.rich_markup_mode = None  # plain help, like the top level
        cmd = typer.main.get_group(obj)
        for sub in cmd.commands.values():  # a group's commands are typer's own class
            defer_coercion(sub.params)
    else:
        single = typer.Typer(rich_markup_mode=None)
        single.command(name=name, cls=ScalableCommand)(obj)
        cmd = typer.main.get_command(single)
    cmd.name = name
    return cmd


class LazyGroup(ScalableGroup):
    """The top-level group: lists commands from ``COMMANDS``, builds one when used.

    A ``ScalableGroup``: usage errors exit 1 and errors become one ``Error:`` line the same
    way under CliRunner and the real entry point."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        defer_coercion(params)
        return params

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


app = typer.Typer(
    name="scalable",
    help="Plan, apply and destroy Dask capacity: local, Slurm, AWS, GKE.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help and usage errors: rich's import alone costs as much as our start.
    rich_markup_mode=None,
    cls=LazyGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scalable {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No ANSI colours.")] = False,
) -> None:
    Ctx.debug = debug or bool(os.environ.get("SCALABLE_DEBUG"))
    Ctx.no_color = no_color


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors become one ``Error:`` line and a hint, never a traceback."""
    if "_SCALABLE_COMPLETE" in os.environ:
        # Shell completion (docs/reference/cli.rst): typer's bash/zsh/fish classes,
        # registered only when asked so a normal start does not pay for them.
        from typer._completion_classes import completion_init

        completion_init()
    rc = app(args=argv, standalone_mode=False)  # ScalableGroup.main: an exit code
    return rc if isinstance(rc, int) else 0


class _StartUp:
    """Set while the console script starts with the cyclic garbage collector paused."""

    paused = False


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
    if gc.isenabled():
        gc.disable()
        _StartUp.paused = True
    sys.exit(main())
