"""``scalable output``, ``env`` and ``status``: reading what apply made."""

from __future__ import annotations

import shlex

import click
from scalable.cli.common import (
    echo,
    file_option,
    json_option,
    print_json,
    target_option,
)
from scalable.connect import client_env
from scalable.errors import ScalableError
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.planning.diff import spec_of
from scalable.state.model import StateFile
from scalable.workspace import Workspace


def _outputs(ws: Workspace) -> dict[str, str]:
    state = ws.store.read()
    if state is None or not state.outputs:
        raise ScalableError(
            f"target {ws.spec.name!r} has no outputs: nothing is applied",
            hint=f"run `scalable apply -t {ws.spec.name}`",
        )
    return state.outputs


@click.command()
@click.argument("name", required=False, help="One output, e.g. scheduler_address.")
@file_option
@target_option
@json_option
@click.option("--raw", is_flag=True, help="The bare value, for scripts.")
def output(
    name: str | None, file: str | None, target: str | None, json_: bool, raw: bool,
) -> None:
    """Print the outputs of the last apply (scheduler_address, dashboard_url, …)."""
    outputs = _outputs(Workspace.open(file, target))
    if name is not None:
        if name not in outputs:
            raise ScalableError(f"no output named {name!r}", hint="outputs: " + ", ".join(outputs))
        if json_:
            print_json(outputs[name])
        elif raw:
            click.echo(outputs[name])
        else:
            echo(f'"{outputs[name]}"')
        return
    if json_:
        print_json(outputs)
        return
    for k, v in sorted(outputs.items()):
        echo(f'{k} = "{v}"')


@click.command()
@file_option
@target_option
def env(file: str | None, target: str | None) -> None:
    """Shell exports so a bare ``distributed.Client()`` connects: eval "$(scalable env)"."""
    ws = Workspace.open(file, target)
    for k, v in client_env(ws.spec, _outputs(ws)).items():
        echo(f"export {k}={shlex.quote(v)}")


@click.command()
@file_option
@target_option
@json_option
def status(file: str | None, target: str | None, json_: bool) -> None:
    """Resources in state, their live status, and the workers the scheduler sees."""
    ws = Workspace.open(file, target)
    state = ws.store.read()
    if state is None or not state.resources:
        if json_:
            print_json({"target": ws.spec.name, "resources": [], "workers": []})
        else:
            echo(f"Target {ws.spec.name}: nothing applied.")
        return
    observed = ws.provider.observe(state.resources)
    workers: list[dict[str, object]] = []
    sched_error = ""
    if SCHEDULER_ADDRESS in state.outputs:
        try:
            client = ws.engine().connect(state.outputs, timeout=5)
            try:
                info = client.scheduler_info(n_workers=-1)["workers"]
                workers = [
                    {"name": w.get("name"), "address": a, "threads": w.get("nthreads"),
                     "memory_limit": w.get("memory_limit"),
                     "processing": len(w.get("processing", ())) if isinstance(
                         w.get("processing"), list | dict) else w.get("metrics", {}).get(
                         "task_counts", {}).get("processing", 0)}
                    for a, w in sorted(info.items(), key=lambda kv: str(kv[1].get("name")))
                ]
            finally:
                client.close()
        except Exception as exc:
            sched_error = f"scheduler unreachable: {exc}"
    run_id = _run_id(ws, state)
    rows = [
        {"address": r.address, "type": r.type, "id": r.id, "status": r.status,
         "observed": observed[r.address].status, "reason": observed[r.address].reason,
         "hourly_usd": ws.provider.price(spec_of(r)).hourly}
        for r in state.resources
    ]
    if json_:
        print_json({"target": ws.spec.name, "outputs": state.outputs, "resources": rows,
                    "workers": workers, "error": sched_error or None, "run_id": run_id})
        return
    echo(f"Target: {ws.spec.name} (provider: {ws.spec.provider})  serial {state.serial}")
    if state.outputs.get(SCHEDULER_ADDRESS):
        echo(f"Scheduler: {state.outputs['scheduler_address']}")
    if run_id:
        echo(f"Run: {run_id}  (scalable report --run {run_id})")
    echo("")
    echo(f"{'ADDRESS':28} {'TYPE':18} {'STATE':9} {'LIVE':8} ID")
    for row in rows:
        echo(f"{row['address']!s:28} {row['type']!s:18} {row['status']!s:9} "
             f"{row['observed']!s:8} {row['id']}")
    echo("")
    if sched_error:
        echo(sched_error)
    else:
        echo(f"Workers registered with the scheduler: {len(workers)}")
        for w in workers:
            echo(f"  {w['name']!s:30} {w['address']!s:28} threads={w['threads']}")


def _run_id(ws: Workspace, state: StateFile) -> str | None:
    """The telemetry run of the live scheduler (pulling a remote one's records)."""
    try:
        from scalable.telemetry.recorder import current_run

        run = current_run(ws, state)
    except Exception:
        return None
    return run.id if run is not None else None
