"""scalable: plan, apply and destroy Dask capacity, from YAML or from Python.

The public API is small on purpose::

    from scalable import ScalableSession, connect
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scalable._version import __version__

if TYPE_CHECKING:
    from scalable.client import ScalableClient
    from scalable.scaling.budget import BudgetExhausted
    from scalable.session import ScalableSession

__all__ = ["BudgetExhausted", "ScalableClient", "ScalableSession", "__version__", "connect"]


def __getattr__(name: str) -> Any:
    # Lazy: `import scalable` must stay cheap for the CLI (distributed costs ~350 ms).
    if name == "ScalableSession":
        from scalable.session import ScalableSession

        return ScalableSession
    if name == "ScalableClient":
        from scalable.client import ScalableClient

        return ScalableClient
    if name == "BudgetExhausted":
        from scalable.scaling.budget import BudgetExhausted

        return BudgetExhausted
    if name == "connect":
        from scalable.connect import connect

        return connect
    raise AttributeError(name)
