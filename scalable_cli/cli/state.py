"""``scalable state list | show ADDR | rm ADDR | force-unlock ID | pull | push FILE |
migrate``."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import click
from scalable.cli.common import (
    OrderedGroup,
    echo,
    file_option,
    lock_seconds,
    lock_timeout_option,
    target_option,
)
from scalable.errors import StateError
from scalable.manifest.schema import StateBackend
from scalable.state.model import StateFile
from scalable.state.store import StateStore, decode_state
from scalable.state.transfer import check_import, import_state
from scalable.workspace import Workspace, backend_store


@click.group(cls=OrderedGroup, no_args_is_help=True,
             help="Inspect and repair a target's state.")
def app() -> None:
    pass


def _state(ws: Workspace) -> StateFile:
    state = ws.store.read()
    if state is None:
        raise StateError(f"no state for target {ws.spec.name!r} ({ws.store.location})",
                         hint="nothing has been applied to it")
    return state


@app.command("list")
@file_option
@target_option
def list_(file: str | None, target: str | None) -> None:
    """Every resource address in state."""
    for rec in _state(Workspace.open(file, target)).resources:
        echo(rec.address)


@app.command()
@click.argument("address")
@file_option
@target_option
def show(address: str, file: str | None, target: str | None) -> None:
    """One resource record, as JSON."""
    state = _state(Workspace.open(file, target))
    rec = state.get(address)
    if rec is None:
        raise StateError(f"no resource {address!r} in state",
                         hint="`scalable state list` shows the addresses")
    echo(json.dumps(asdict(rec), indent=2))


@app.command()
@click.argument("address", help="Address to forget (the resource is NOT deleted).")
@file_option
@target_option
@lock_timeout_option
def rm(address: str, file: str | None, target: str | None, lock_timeout: str) -> None:
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


@app.command()
@click.argument("source", help="Address (or group, e.g. workers.old) to move.")
@click.argument("destination", help="Its new address (or group).")
@file_option
@target_option
@lock_timeout_option
def mv(
    source: str, destination: str, file: str | None, target: str | None, lock_timeout: str,
) -> None:
    """Rename an address in state (e.g. a group renamed in the manifest); nothing is touched."""
    from scalable.state.moves import move

    ws = Workspace.open(file, target)
    with ws.store.lock("state mv", timeout=lock_seconds(lock_timeout)):
        state = _state(ws)
        moved = move(state, source, destination)
        ws.store.write(state)
    for old, new in moved:
        echo(f'Move "{old}" to "{new}"')
    echo(f"Successfully moved {len(moved)} object(s).")


@app.command("force-unlock")
@click.argument("lock_id")
@file_option
@target_option
def force_unlock(lock_id: str, file: str | None, target: str | None) -> None:
    """Clear a lock left by a command that no longer runs."""
    ws = Workspace.open(file, target)
    holder = ws.store.force_unlock(lock_id)
    echo(f"scalable state has been successfully unlocked (was: {holder.operation} by "
         f"{holder.who}, pid {holder.pid}).")


force_option = click.option(
    "--force", is_flag=True, help="Write even over another lineage or a newer serial."
)


@app.command()
@file_option
@target_option
def pull(file: str | None, target: str | None) -> None:
    """Print the target's state, as stored, to stdout (e.g. to keep a copy)."""
    state = _state(Workspace.open(file, target))
    sys.stdout.write(json.dumps(state.to_dict(), indent=2) + "\n")


@app.command()
@click.argument("path", help="A state file written by `state pull`; - for stdin.")
@file_option
@target_option
@force_option
@lock_timeout_option
def push(path: str, file: str | None, target: str | None, force: bool, lock_timeout: str) -> None:
    """Replace the target's state with a state file (Terraform's rules on lineage and serial)."""
    ws = Workspace.open(file, target)
    source = "<stdin>" if path == "-" else path
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise StateError(f"{source}: cannot read ({exc.strerror})") from None
    incoming = decode_state(raw, source, None)
    _same_target(incoming, ws, source, force)
    with ws.store.lock("state push", timeout=lock_seconds(lock_timeout)):
        written = import_state(ws.store, incoming, force=force)
    if written:
        echo(f"Pushed {source} to {ws.store.location} (serial {incoming.serial}, "
             f"lineage {incoming.lineage}).")
    else:
        echo(f"{ws.store.location} already holds this state (serial {incoming.serial}): "
             "nothing written.")


def _same_target(incoming: StateFile, ws: Workspace, source: str, force: bool) -> None:
    if force:
        return
    if incoming.target != ws.spec.name or incoming.provider != ws.spec.provider:
        raise StateError(
            f"{source} is the state of target {incoming.target!r} (provider "
            f"{incoming.provider}), not of {ws.spec.name!r} ({ws.spec.provider})",
            hint="pick the target with --target, or --force to write it anyway",
        )


def parse_backend(url: str) -> StateBackend:
    """``local``, ``s3://BUCKET[/KEY]`` or ``gs://BUCKET[/PREFIX]`` as a backend block."""
    if url == "local":
        return StateBackend(backend="local")
    for scheme, name in (("s3://", "s3"), ("gs://", "gcs")):
        if url.startswith(scheme):
            bucket, _, rest = url[len(scheme):].partition("/")
            if not bucket:
                break
            where = {"key": rest or None} if name == "s3" else {"prefix": rest or None}
            return StateBackend(backend=name, bucket=bucket, **where)  # type: ignore[arg-type]
    raise StateError(f"{url!r} is not a state backend",
                     hint="use local, s3://BUCKET[/KEY-OR-PREFIX] or gs://BUCKET[/PREFIX]")


def _manifest_block(cfg: StateBackend) -> str:
    if cfg.backend == "local":
        return "state: {backend: local}   # or no state: block at all"
    where = f", key: {cfg.key}" if cfg.key else ""
    if cfg.backend == "gcs":
        where = f", prefix: {cfg.prefix}" if cfg.prefix else ""
    return f"state: {{backend: {cfg.backend}, bucket: {cfg.bucket}{where}}}"


@app.command()
@click.option("--to", help="Copy the manifest's state to: local, s3://BUCKET[/KEY], "
                           "gs://BUCKET[/PREFIX].")
@click.option("--from", "from_", help="Copy from there into the manifest's (new) backend.")
@file_option
@target_option
@force_option
@lock_timeout_option
def migrate(
    to: str | None, from_: str | None, file: str | None, target: str | None, force: bool,
    lock_timeout: str,
) -> None:
    """Copy a target's state between backends (Terraform's `init -migrate-state`).

    Both states are locked while copying; the destination must be empty or hold an older
    state of the same lineage. The source is left as it was: point the manifest's
    ``state:`` at the destination (the block is printed) and delete the old copy.
    """
    if (to is None) == (from_ is None):
        raise StateError("say where to: --to BACKEND (from the manifest's backend) or "
                         "--from BACKEND (into it)",
                         hint="e.g. scalable state migrate --to gs://my-bucket/scalable")
    ws = Workspace.open(file, target)
    other = backend_store(parse_backend(to or from_ or ""), ws.spec)
    src, dst = (ws.store, other) if to is not None else (other, ws.store)
    if src.location == dst.location:
        raise StateError(f"source and destination are the same ({src.location})")
    seconds = lock_seconds(lock_timeout)
    with ExitStack() as stack:
        stack.enter_context(src.lock("state migrate (source)", timeout=seconds))
        stack.enter_context(dst.lock("state migrate (destination)", timeout=seconds))
        state = src.read()
        if state is None:
            raise StateError(f"no state to migrate at {src.location}",
                             hint="nothing has been applied there")
        _same_target(state, ws, src.location, force)
        check_import(state, dst.read(), force=force, location=dst.location)
        import_state(dst, state, force=True)  # checked just above, under both locks
        copied = _verify(dst, state)
    echo(f"Copied the state of {ws.spec.name!r} (serial {copied.serial}, lineage "
         f"{copied.lineage}, {len(copied.resources)} resources)\n  from {src.location}\n"
         f"  to   {dst.location}")
    if to is not None:
        echo(f"\nNow point the manifest at it:\n  {_manifest_block(parse_backend(to))}\n"
             f"then remove the old copy ({src.location}) so nobody uses it by mistake.")
    else:
        echo(f"\nThe manifest's backend now holds it; remove the old copy ({src.location}).")


def _verify(store: StateStore, wrote: StateFile) -> StateFile:
    back = store.read()
    if back is None or back.content() != wrote.content():
        raise StateError(f"{store.location}: the copy does not read back as written",
                         hint="the source is untouched; run the migration again")
    return back
