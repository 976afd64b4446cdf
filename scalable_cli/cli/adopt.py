"""``scalable import ADDR ID``."""

from __future__ import annotations

import click
from scalable.cli.common import (
    echo,
    file_option,
    lock_seconds,
    lock_timeout_option,
    target_option,
)
from scalable.state.model import StateFile
from scalable.workspace import Workspace


@click.command()
@click.argument("address", help="Where in state: e.g. workers.default[1].")
@click.argument("id", help="The backend's id (`state show` prints ids).")
@file_option
@target_option
@click.option("--force", is_flag=True, help="Take over a resource of another lineage.")
@lock_timeout_option
def import_(
    address: str, id: str, file: str | None, target: str | None, force: bool,
    lock_timeout: str,
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
