"""``scalable import ADDR ID``."""

from __future__ import annotations

from typing import Annotated

import typer
from scalable.cli.common import FileOpt, LockTimeoutOpt, TargetOpt, echo, lock_seconds
from scalable.state.model import StateFile
from scalable.workspace import Workspace


def import_(
    address: Annotated[str, typer.Argument(help="Where in state: e.g. workers.default[1].")],
    id: Annotated[str, typer.Argument(help="The backend's id (`state show` prints ids).")],
    file: FileOpt = None,
    target: TargetOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Take over a resource of another lineage.")
    ] = False,
    lock_timeout: LockTimeoutOpt = "0s",
) -> None:
    """Adopt an existing resource into state (checked against the backend)."""
    from scalable.importing import import_resource

    ws = Workspace.open(file, target)
    with ws.store.lock("import", timeout=lock_seconds(lock_timeout)):
        state = ws.store.read() or StateFile(target=ws.spec.name, provider=ws.spec.provider)
        done = import_resource(ws.provider, state, address, id, force=force)
        ws.store.write(state)
    echo(
        f'{address}: Importing from ID "{id}"...\n{address}: Import prepared!\n'
        f"{address}: Refreshing state... [id={id}]\n\nImport successful!\n\n"
        "The resources that were imported are shown above. These resources are now in\n"
        "your scalable state and will henceforth be managed by scalable."
    )
    if done.foreign_lineage:
        echo(
            f"\nWarning: {id} was taken from another state (lineage "
            f"{done.foreign_lineage}); remove it there with `scalable state rm` so two "
            "states do not manage it."
        )
