"""``scalable plan``, ``apply`` and ``destroy``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from scalable.addrs import CONTROLLER, SCHEDULER
from scalable.cli.common import (
    auto_approve_option,
    confirm,
    echo,
    file_option,
    info,
    json_option,
    lock_seconds,
    lock_timeout_option,
    print_json,
    target_option,
    use_color,
)
from scalable.engine import ApplyResult, Engine
from scalable.errors import ScalableError
from scalable.hooks import human, json_lines
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.planning.model import Plan
from scalable.planning.planfile import check_fresh, load_plan, save_plan
from scalable.planning.render import render_plan
from scalable.planning.surgery import APPLIED_TARGET_WARNING
from scalable.workspace import Workspace

if TYPE_CHECKING:
    from scalable.streaming import StreamHook


class PartialApply(ScalableError):
    exit_code = 3


@contextmanager
def _streamed(json_: bool) -> Iterator[StreamHook | None]:
    """``--json``: the command's output is the stream (docs/reference/streaming-json.rst).

    The stream opens with its version line; an error that stops the command becomes a
    ``diagnostic`` line too (it still goes to stderr, and the exit code is unchanged).
    """
    if not json_:
        yield None
        return
    from scalable.streaming import StreamHook

    stream = StreamHook("")
    stream.version()
    try:
        yield stream
    except PartialApply:
        raise  # its errors were streamed as diagnostics when the apply ended
    except ScalableError as exc:
        stream.diagnostic(exc.message, exc.hint or "")
        raise
    except click.exceptions.Exit:
        raise
    except Exception as exc:
        stream.diagnostic(f"{type(exc).__name__}: {exc}", "this is a bug in scalable")
        raise
    finally:
        stream.close()


def _json_needs_approval(json_: bool, approved: bool) -> None:
    if json_ and not approved:
        raise ScalableError(
            "Plan file or --auto-approve required: scalable cannot ask for approval when "
            "--json is set",
            hint="pass --auto-approve, or apply a saved plan (`scalable plan -o FILE`)",
        )


budget_option = click.option(
    "--budget-usd", type=float, help="Objective: spend at most this."
)
deadline_option = click.option(
    "--deadline-hours", type=float, help="Objective: finish within this."
)
on_budget_option = click.option(
    "--on-budget", metavar="stop|destroy",
    help="When the budget is spent: retire the workers (stop, the default) or destroy the "
         "whole target.",
)
tasks_option = click.option("--tasks", type=int, help="How many tasks the objective is for.")
replace_option = click.option(
    "--replace", metavar="ADDR", multiple=True,
    help="Replace ADDR (a resource or a group) even if unchanged. Repeatable.",
)
only_option = click.option(
    "--only", metavar="ADDR", multiple=True,
    help="Terraform's -target: plan only ADDR (a resource or a group) and what it needs. "
         "Repeatable.",
)
refresh_only_option = click.option(
    "--refresh-only", is_flag=True, help="Record drift into state; change no capacity."
)
tag_option = click.option("--tag", help="Predict task times from this tag's history.")


def _objectives(
    ws: Workspace, engine: Engine, budget: float | None, deadline: float | None,
    tasks: int | None, tag: str | None, quiet: bool, on_budget: str | None = None,
) -> None:
    """Objective-driven counts, from flags or the target's ``objectives:``."""
    from scalable.manifest.schema import Objectives

    objectives = ws.spec.objectives
    if on_budget is not None and on_budget not in ("stop", "destroy"):
        raise ScalableError(f"--on-budget: {on_budget!r} is not one of stop, destroy",
                            hint="--on-budget stop (retire the workers) or destroy")
    if budget is not None or deadline is not None:
        # Flags replace the manifest's goals; what to do at the budget stays the
        # manifest's unless --on-budget says otherwise.
        objectives = Objectives.model_validate({
            "budget_usd": budget, "deadline_hours": deadline,
            "on_budget": on_budget or (objectives.on_budget if objectives else "stop")})
    elif on_budget is not None and objectives is not None:
        objectives = objectives.model_copy(update={"on_budget": on_budget})
    if on_budget is not None and (objectives is None or objectives.budget_usd is None):
        raise ScalableError("--on-budget needs a budget",
                            hint="add --budget-usd X, or objectives.budget_usd to the target")
    if objectives is None or (objectives.budget_usd is None and objectives.deadline_hours is None):
        return
    chosen = engine.plan_objectives(objectives, tasks=tasks, tag=tag)
    if not quiet:
        echo(chosen.table())
        echo()


@click.command()
@file_option
@target_option
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Save the plan to FILE.")
@json_option
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@click.option("--destroy", is_flag=True, help="Plan to destroy everything.")
@click.option("--no-refresh", is_flag=True, help="Trust the state; do not ask the provider.")
@budget_option
@on_budget_option
@deadline_option
@tasks_option
@tag_option
@click.option("--show-scripts", is_flag=True,
              help="Print the batch script (local: the command) of each new worker.")
@replace_option
@only_option
@refresh_only_option
def plan(
    file: str | None, target: str | None, out: Path | None, json_: bool,
    detailed_exitcode: bool, destroy: bool, no_refresh: bool, budget_usd: float | None,
    on_budget: str | None, deadline_hours: float | None, tasks: int | None, tag: str | None,
    show_scripts: bool, replace: tuple[str, ...], only: tuple[str, ...], refresh_only: bool,
) -> None:
    """Show what apply would change, and what it would cost."""
    ws = Workspace.open(file, target)
    # warnings to stderr: --json keeps stdout clean
    engine = ws.engine(hooks=json_lines(info), budget=budget_usd is not None)
    engine.preflight()
    if not destroy and not refresh_only:
        _objectives(ws, engine, budget_usd, deadline_hours, tasks, tag, json_, on_budget)
    p = engine.plan(destroy=destroy, refresh=not no_refresh, replace=replace,
                    targets=only, refresh_only=refresh_only)
    if json_:
        print_json(p.to_dict(detail=False))
    else:
        echo(render_plan(p, color=use_color()).rstrip("\n"))
    if show_scripts:
        _show_scripts(ws, p)
    if out is not None:
        save_plan(p, out)
        if not json_:
            echo(f"\nSaved the plan to: {out}\nTo perform exactly these actions, run: "
                 f"scalable apply {out}")
    if detailed_exitcode and p.has_changes:
        raise click.exceptions.Exit(2)


def _show_scripts(ws: Workspace, p: Plan) -> None:
    """Each job-to-be's exact script, from the provider's ``job_script`` (batch providers)."""
    job_script = getattr(ws.provider, "job_script", None)
    if job_script is None:
        raise ScalableError(f"--show-scripts: the {ws.spec.provider} provider submits no "
                            "job scripts")
    state = ws.store.read()
    new_scheduler = any(c.address == SCHEDULER and c.action in ("create", "replace")
                        for c in p.changes)
    address = None if state is None or new_scheduler else state.outputs.get(SCHEDULER_ADDRESS)
    shown = 0
    for c in p.actionable:
        if c.action not in ("create", "replace") or c.resource is None:
            continue
        if c.address == CONTROLLER:  # runs beside the state, not as a job
            continue
        text = job_script(c.resource, lineage=state.lineage if state else None,
                          scheduler_address=address)
        if text is None:  # not a job (a scheduler process on this host)
            continue
        label = getattr(ws.provider, "script_label", "batch script")
        echo(f"\n# ---- {c.address}: {label} ----\n{text.rstrip()}")
        shown += 1
    if shown:
        echo("\n# <…> placeholders are filled in at apply (idempotency key, and the lineage "
             "and scheduler address where they do not exist yet).")
    else:
        echo("\nNo new jobs: no scripts to show.")


def _finish(p: Plan, result: ApplyResult, stream: StreamHook | None, verb: str) -> None:
    if stream is not None:  # the stream has shown the result as it happened
        if p.targets:
            stream.diagnostic(APPLIED_TARGET_WARNING, severity="warning")
    else:
        counts = f"Resources: {result.added} added, {result.changed} changed, " \
                 f"{result.destroyed} destroyed."
        if p.targets:
            echo(f"\n{APPLIED_TARGET_WARNING}")
        if result.partial:
            echo(f"\n{verb} partially complete! {counts}")
        else:
            echo(f"\n{verb} complete! {counts}")
        if result.outputs and verb == "Apply":
            echo("\nOutputs:\n")
            for k, v in sorted(result.outputs.items()):
                echo(f'{k} = "{v}"')
    if result.partial:
        raise PartialApply(
            "; ".join(result.errors),
            hint="what succeeded is in state; run apply again to converge",
        )
    if result.version_error is not None:
        raise result.version_error


@click.command()
@click.argument("planfile", required=False, type=click.Path(path_type=Path),
          help="A plan saved by `plan -o`.")
@file_option
@target_option
@auto_approve_option
@json_option
@click.option("--no-wait", is_flag=True, help="Do not wait for workers to register.")
@lock_timeout_option
@budget_option
@on_budget_option
@deadline_option
@tasks_option
@tag_option
@replace_option
@only_option
@refresh_only_option
def apply(
    planfile: Path | None, file: str | None, target: str | None, auto_approve: bool,
    json_: bool, no_wait: bool, lock_timeout: str, budget_usd: float | None,
    on_budget: str | None, deadline_hours: float | None, tasks: int | None, tag: str | None,
    replace: tuple[str, ...], only: tuple[str, ...], refresh_only: bool,
) -> None:
    """Make the target's capacity match the manifest."""
    with _streamed(json_) as stream:
        _json_needs_approval(json_, auto_approve or planfile is not None)
        _apply(planfile, file, target, auto_approve, stream, no_wait, lock_timeout,
               budget_usd, on_budget, deadline_hours, tasks, tag, replace, only, refresh_only)


def _apply(
    planfile: Path | None, file: str | None, target: str | None, auto_approve: bool,
    stream: StreamHook | None, no_wait: bool, lock_timeout: str, budget_usd: float | None,
    on_budget: str | None, deadline_hours: float | None, tasks: int | None, tag: str | None,
    replace: tuple[str, ...], only: tuple[str, ...], refresh_only: bool,
) -> None:
    json_ = stream is not None
    ws = Workspace.open(file, target)
    saved = load_plan(planfile) if planfile is not None else None
    if saved is not None and (replace or only or refresh_only):
        raise ScalableError(
            "Can't set planning options when applying a saved plan: --replace, --only and "
            "--refresh-only were fixed when the plan was made",
            hint="make the plan with them: `scalable plan --only ADDR -o FILE`",
        )
    if saved is not None and target is None and saved.target != ws.spec.name:
        ws = Workspace.open(file, saved.target)
    if stream is not None:
        stream.provider = ws.spec.provider
    # A saved plan made with --budget-usd carries the controller that enforces it.
    budget = budget_usd is not None or (
        saved is not None and any(c.address == CONTROLLER for c in saved.changes))
    engine = ws.engine(hooks=stream or human(echo), budget=budget)
    engine.preflight()
    with engine.locked("apply", lock_seconds(lock_timeout)):
        if saved is not None:
            check_fresh(saved, ws.store.read(), ws.spec.manifest_digest, ws.spec.name)
            engine.pin_saved(saved)
            p = saved
        else:
            if not refresh_only:
                _objectives(ws, engine, budget_usd, deadline_hours, tasks, tag, json_,
                            on_budget)
            p = engine.plan(replace=replace, targets=only, refresh_only=refresh_only)
        if not json_:
            echo(render_plan(p, color=use_color()).rstrip("\n"))
            echo()
        if saved is None and p.has_changes and not auto_approve:
            confirm(
                "Do you want to perform these actions?",
                "scalable will perform the actions described above.",
            )
        result = engine.execute(p, wait=not no_wait)
    _finish(p, result, stream, "Apply")


@click.command()
@file_option
@target_option
@auto_approve_option
@json_option
@lock_timeout_option
def destroy(
    file: str | None, target: str | None, auto_approve: bool, json_: bool, lock_timeout: str,
) -> None:
    """Tear down everything this target's state holds."""
    with _streamed(json_) as stream:
        _json_needs_approval(json_, auto_approve)
        _destroy(file, target, auto_approve, stream, lock_timeout)


def _destroy(file: str | None, target: str | None, auto_approve: bool,
             stream: StreamHook | None, lock_timeout: str) -> None:
    json_ = stream is not None
    ws = Workspace.open(file, target)
    if stream is not None:
        stream.provider = ws.spec.provider
    engine = ws.engine(hooks=stream or human(echo))
    with engine.locked("destroy", lock_seconds(lock_timeout)):
        p = engine.plan(destroy=True)
        if not json_:
            echo(render_plan(p, color=use_color()).rstrip("\n"))
            echo()
        if p.has_changes and not auto_approve:
            confirm(
                "Do you really want to destroy all resources?",
                "scalable will destroy all of this target's capacity. There is no undo.",
            )
        result = engine.execute(p, wait=False)
    _finish(p, result, stream, "Destroy")
