"""Graceful retirement: move data off Dask workers before their processes stop.

One place for what the engine does before deleting workers and the GKE provider does
before scaling a StatefulSet down. Best effort by design: a scheduler that cannot be
reached, or a retire that fails, never stops the delete that follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def retire_workers(
    address: str,
    security: Any,
    names: Iterable[str],
    *,
    progress: Callable[[str], None],
    timeout: float = 5.0,
    then: str = "stopping the workers",
) -> int:
    """Retire the workers called ``names`` on the scheduler at ``address``; how many."""
    wanted = set(names)
    if not wanted or not address:
        return 0
    # distributed costs ~300 ms to import: only when something is being retired.
    from distributed import Client

    try:
        client = Client(address, security=security, timeout=timeout, set_as_default=False)
    except Exception:
        return 0  # no scheduler left: nothing to move, the delete still goes ahead
    try:
        info = client.scheduler_info(n_workers=-1)["workers"]
        victims = [a for a, w in info.items() if w.get("name") in wanted]
        if victims:
            progress(f"retiring {len(victims)} worker(s) gracefully (moving data off)")
            client.retire_workers(workers=victims, close_workers=True)
        return len(victims)
    except Exception as exc:  # retiring is best effort; the delete follows regardless
        progress(f"graceful retire failed ({exc}); {then}")
        return 0
    finally:
        client.close()
