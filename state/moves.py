"""``state mv``: rename addresses inside one state, as Terraform's ``state mv`` does.

A resource (``workers.old[3]`` → ``workers.new[3]``) or a whole group (``workers.old`` →
``workers.new``: every ``workers.old[i]`` keeps its index, and the group's adaptive count
moves with it). Only the record changes: the backend object is not touched, and the Dask
workers keep the names they were started with until they are replaced.
"""

from __future__ import annotations

from dataclasses import replace

from scalable import addrs
from scalable.errors import StateError
from scalable.state.model import StateFile

_HINT = "addresses look like workers.default[0], or workers.default for a whole group"


def move(state: StateFile, source: str, destination: str) -> list[tuple[str, str]]:
    """Rename ``source`` to ``destination`` in ``state``; return the (old, new) pairs."""
    src, dst = addrs.parse(source), addrs.parse(destination)
    for text, parsed in ((source, src), (destination, dst)):
        if parsed is None:
            raise StateError(f"Invalid address {text!r}", hint=_HINT)
    assert src is not None and dst is not None
    exact = state.get(source)
    if exact is not None:
        pairs = [(source, destination)]
    else:
        pairs = [
            (r.address, destination + r.address[len(source) :])
            for r in state.resources
            if r.address.startswith(source + "[")
        ]
        if pairs and dst.index is not None:
            raise StateError(
                f"Invalid target address: cannot move the group {source} to "
                f"the single resource {destination}",
                hint=_HINT,
            )
    if not pairs:
        raise StateError(
            f"Invalid source address: no resource {source!r} in state",
            hint="`scalable state list` shows the addresses",
        )
    taken = {r.address for r in state.resources} - {old for old, _ in pairs}
    for _, new in pairs:
        if new in taken:
            raise StateError(
                f"Invalid target address: cannot move to {new}: there is "
                "already a resource at that address in the current state",
                hint="`scalable state rm` it first, or pick another address",
            )
    new_group = addrs.Address.parse(pairs[0][1]).group
    renamed = dict(pairs)
    state.resources = [
        replace(
            r,
            address=renamed.get(r.address, r.address),
            group=addrs.Address.parse(renamed[r.address]).group
            if r.address in renamed and r.group is not None
            else r.group,
            # What stood on a moved resource now stands on its new address.
            depends_on=[renamed.get(d, d) for d in r.depends_on],
        )
        for r in state.resources
    ]
    old_group = src.group
    if old_group and new_group and old_group != new_group and old_group in state.scale:
        state.scale[new_group] = state.scale.pop(old_group)
    return pairs
