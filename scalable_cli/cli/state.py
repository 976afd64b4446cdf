"""``scalable state list | show ADDR | rm ADDR | force-unlock ID``."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from scalable.cli.common import FileOpt, LockTimeoutOpt, TargetOpt, echo, lock_seconds
from scalable.errors import StateError
from scalable.state.model import StateFile
from scalable.workspace import Workspace

app = typer.Typer(help="Inspect and repair a target's state.", no_args_is_help=True)


def _state(ws: Workspace) -> StateFile:
    state = ws.store.read()
    if state is None:
        raise StateError(f"no state for target {ws.spec.name!r} ({ws.store.location})",
                         hint="nothing has been applied to it")
    return state


@app.command("list")
def list_(file: FileOpt = None, target: TargetOpt = None) -> None:
    """Every resource address in state."""
    for rec in _state(Workspace.open(file, target)).resources:
        echo(rec.address)


@app.command()
def show(address: str, file: FileOpt = None, target: TargetOpt = None) -> None:
    """One resource record, as JSON."""
    state = _state(Workspace.open(file, target))
    rec = state.get(address)
    if rec is None:
        raise StateError(f"no resource {address!r} in state",
                         hint="`scalable state list` shows the addresses")
    echo(json.dumps(asdict(rec), indent=2))


@app.command()
def rm(
    address: Annotated[
        str, typer.Argument(help="Address to forget (the resource is NOT deleted).")
    ],
    file: FileOpt = None,
    target: TargetOpt = None,
    lock_timeout: LockTimeoutOpt = "0s",
) -> None:
    """Forget a resource without deleting it (it will not be managed any more)."""
    ws = Workspace.open(file, target)
    with ws.store.lock("state rm", timeout=lock_seconds(lock_timeout)):
        state = _state(ws)
        if state.forget(address) is None:
            raise StateError(f"no resource {address!r} in state",
                             hint="`scalable state list` shows the addresses")
        ws.store.write(state)
    echo(f"Removed {address} from state (serial {state.serial}). It still exists if it did; "
         "scalable will not touch it again.")


@app.command("force-unlock")
def force_unlock(lock_id: str, file: FileOpt = None, target: TargetOpt = None) -> None:
    """Clear a lock left by a command that no longer runs."""
    ws = Workspace.open(file, target)
    holder = ws.store.force_unlock(lock_id)
    echo(f"scalable state has been successfully unlocked (was: {holder.operation} by "
         f"{holder.who}, pid {holder.pid}).")
