"""Moving a whole state between places: ``state push`` and ``state migrate``.

Terraform's ``statemgr.Import`` rules, in its words: a state is never pushed over an
unrelated one (another lineage), over a newer one (a higher serial), or over a different
one with the same serial — unless forced. The caller holds the destination's lock.
"""

from __future__ import annotations

from scalable.errors import StateError
from scalable.state.model import StateFile
from scalable.state.store import StateStore


def check_import(
    incoming: StateFile, existing: StateFile | None, *, force: bool, location: str
) -> None:
    """Refuse what Terraform refuses (each with the way out); nothing with ``force``."""
    if force or existing is None:
        return
    hint = (
        "check that this is the right state; --force writes it anyway (the one there "
        "now is kept as the backup)"
    )
    if incoming.lineage != existing.lineage:
        raise StateError(
            f"cannot import state with lineage {incoming.lineage!r} over "
            f"unrelated state with lineage {existing.lineage!r} ({location})",
            hint=hint,
        )
    if incoming.serial < existing.serial:
        raise StateError(
            f"cannot import state with serial {incoming.serial} over newer "
            f"state with serial {existing.serial} ({location})",
            hint="`scalable state pull` the newer one first; " + hint,
        )
    if incoming.serial == existing.serial and incoming.content() != existing.content():
        raise StateError(
            f"cannot overwrite existing state with serial {existing.serial} "
            f"with a different state that has the same serial ({location})",
            hint=hint,
        )


def import_state(store: StateStore, incoming: StateFile, *, force: bool) -> bool:
    """Write ``incoming`` into ``store`` (lock held) under the import rules."""
    existing = store.read()
    check_import(incoming, existing, force=force, location=store.location)
    return store.write(incoming, replace=True)
