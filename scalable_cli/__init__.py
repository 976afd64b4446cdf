"""scalable: plan, apply and destroy Dask capacity, from YAML or from Python.

The public API is small on purpose::

    from scalable import ScalableSession, connect
    from scalable import cacheable, FileType, DirType   # result caching
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scalable._version import __version__

if TYPE_CHECKING:
    from scalable.cache.decorator import cacheable
    from scalable.cache.types import DirType, FileType
    from scalable.client import ScalableClient
    from scalable.scaling.budget import BudgetExhausted
    from scalable.session import ScalableSession

__all__ = [
    "BudgetExhausted", "DirType", "FileType", "ScalableClient", "ScalableSession",
    "__version__", "cacheable", "connect",
]


def __getattr__(name: str) -> Any:
    # Lazy: `import scalable` must stay cheap for the CLI (distributed costs ~350 ms).
    value = _load(name)
    # Importing scalable.connect binds the *module* as this package's `connect`; put
    # the function back, or `from scalable import connect` returns the module.
    globals()[name] = value
    return value


def _load(name: str) -> Any:
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
    if name == "cacheable":
        from scalable.cache.decorator import cacheable

        return cacheable
    if name in ("FileType", "DirType"):
        from scalable.cache import types

        return getattr(types, name)
    raise AttributeError(name)
