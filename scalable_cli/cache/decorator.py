"""``@cacheable``: look a call up by its key, run it on a miss, store the result.

Forms::

    @cacheable                                   # bare
    @cacheable(return_type=dict, scenario_id=int, config=FileType)
    @cacheable(recompute=True)                   # run again and overwrite the entry

Keyword arguments other than ``return_type`` and ``recompute`` declare argument types
(see scalable.cache.keys). The wrapped function works called directly and submitted to
Dask (``client.submit(f, ...)``): the key is computed, looked up and stored where the
call runs, i.e. on the worker. ``None`` is a value and is cached; an exception is never
cached. Inside a Dask task, each hit or miss is reported to the scheduler (event topic
``scalable-cache``), where scalable's telemetry counts it per tag.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, overload

from scalable.cache import config
from scalable.cache.entry import CorruptEntry, Header, decode
from scalable.cache.keys import bind, call_key, function_fingerprint
from scalable.cache.store import CacheWarning

EVENT_TOPIC = "scalable-cache"
_RESERVED = ("return_type", "recompute")


class CachedFunction:
    """A function with a persistent cache in front of it (made by ``cacheable``)."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        return_type: type | None = None,
        recompute: bool = False,
        arg_types: dict[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"cacheable needs a function, got {type(func).__qualname__}")
        functools.update_wrapper(self, func)
        self.func = func
        self.return_type = return_type
        self.recompute = recompute
        self.arg_types = dict(arg_types or {})
        self.signature = inspect.signature(func)
        params = self.signature.parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = [n for n in self.arg_types if n not in params and not takes_kwargs]
        if unknown:
            raise TypeError(
                f"cacheable({', '.join(f'{n}=...' for n in unknown)}) on "
                f"{func.__qualname__}: no such argument (arguments: {', '.join(params)})"
            )
        self._fingerprint = fingerprint

    # -- identity ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``module.qualname``: how ``scalable cache`` names this function."""
        return f"{self.func.__module__}.{self.func.__qualname__}"

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = function_fingerprint(self.func)
        return self._fingerprint

    def __repr__(self) -> str:
        return f"<cacheable {self.name}>"

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # Used as a method: bind like a function would.
        return self if obj is None else functools.partial(self, obj)

    def __reduce__(self) -> Any:
        mod, qual = self.func.__module__, self.func.__qualname__
        if mod != "__main__" and "<locals>" not in qual and _importable(mod, qual) is self:
            return _lookup, (mod, qual)  # by reference: the worker imports the module
        # By value: ship the key's code fingerprint with the code it describes, so the
        # key is the same on the client (planning) and the worker.
        return _rebuild, (
            self.func,
            self.return_type,
            self.recompute,
            self.arg_types,
            self.fingerprint,
        )

    # -- keys --------------------------------------------------------------------------

    def key(self, *args: Any, **kwargs: Any) -> str:
        """This call's cache key (hex BLAKE2b-256)."""
        return call_key(self.fingerprint, self._bind(args, kwargs), self.arg_types, config.seed())

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        try:
            return bind(self.signature, self.arg_types, args, kwargs)
        except TypeError as exc:
            raise type(exc)(f"{self.func.__qualname__}(): {exc}") from None

    def is_cached(self, *args: Any, **kwargs: Any) -> bool:
        """Whether this call would be a hit (local store, then the remote)."""
        cache = config.current()
        key = self.key(*args, **kwargs)
        if cache.local.contains(self.name, key):
            return True
        return cache.remote is not None and cache.remote.get_bytes(self.name, key) is not None

    def forget(self, *args: Any, **kwargs: Any) -> bool:
        """Remove this call's entry (local and remote); True if there was a local one."""
        cache = config.current()
        key = self.key(*args, **kwargs)
        path = cache.local.path(self.name, key)
        existed = path.is_file()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if cache.remote is not None:
            cache.remote.delete(self.name, key)
        return existed

    def call(self, *args: Any, **kwargs: Any) -> CachedCall:
        """A call not made yet: for planning (``session.plan(calls=...)``) or later."""
        return CachedCall(self, args, kwargs)

    # -- calling -----------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not config.enabled():
            return self.func(*args, **kwargs)
        task = _task_context()
        if task is not None and task[2] in config.off_tags():
            return self.func(*args, **kwargs)
        bound = self._bind(args, kwargs)
        key = call_key(self.fingerprint, bound, self.arg_types, config.seed())
        cache = config.current()
        if not self.recompute:
            found = self._lookup(cache, key)
            if found is not None:
                header, value = found
                cache.local.record(self.name, hit=True, seconds=header.duration)
                _report(task, self.name, True, header.duration)
                return value
        start = time.perf_counter()
        result = self.func(*bound.args, **bound.kwargs)  # an exception is never stored
        duration = time.perf_counter() - start
        self._store(cache, key, result, duration)
        cache.local.record(self.name, hit=False, seconds=duration)
        _report(task, self.name, False, duration)
        return result

    def _lookup(self, cache: config.Cache, key: str) -> tuple[Header, Any] | None:
        found = cache.local.get(self.name, key)
        if found is None and cache.remote is not None:
            data = cache.remote.get_bytes(self.name, key)
            if data is not None:
                try:
                    found = decode(data, key)
                except CorruptEntry as exc:
                    warnings.warn(
                        f"corrupt remote cache entry {cache.remote.url} "
                        f"{self.name}/{key[:12]}: {exc}; recomputing",
                        CacheWarning,
                        stacklevel=3,
                    )
                    return None
                cache.local.put_bytes(self.name, key, data)  # next time, local
        if found is not None and not self._typed(found[1]):
            cache.local.discard(
                self.name,
                key,
                f"cache entry {self.name}/{key[:12]} holds "
                f"{type(found[1]).__qualname__}, not "
                f"{getattr(self.return_type, '__qualname__', '?')}",
            )
            return None
        return found

    def _typed(self, value: Any) -> bool:
        rt = self.return_type
        return rt is None or value is None or not isinstance(rt, type) or isinstance(value, rt)

    def _store(self, cache: config.Cache, key: str, result: Any, duration: float) -> None:
        if not self._typed(result):
            warnings.warn(
                f"{self.name} returned {type(result).__qualname__}, not its declared "
                f"return_type {self.return_type!r}; the result is not cached",
                CacheWarning,
                stacklevel=3,
            )
            return
        header = Header(self.name, key, time.time(), duration)
        try:
            data = cache.local.put(header, result)
        except Exception as exc:  # unpicklable result, full disk...
            warnings.warn(
                f"{self.name}: result not cached ({type(exc).__name__}: {exc})",
                CacheWarning,
                stacklevel=3,
            )
            return
        if cache.remote is not None:
            cache.remote.put_bytes(self.name, key, data)


@dataclass(frozen=True)
class CachedCall:
    """One call of a cacheable function, not made yet."""

    func: CachedFunction
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return self.func.key(*self.args, **self.kwargs)

    def is_cached(self) -> bool:
        return self.func.is_cached(*self.args, **self.kwargs)

    def __call__(self) -> Any:
        return self.func(*self.args, **self.kwargs)


def _importable(module: str, qualname: str) -> Any:
    try:
        return _lookup(module, qualname)
    except Exception:  # a module that cannot be imported here: ship by value
        return None


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


def _rebuild(
    func: Callable[..., Any],
    return_type: type | None,
    recompute: bool,
    arg_types: dict[str, Any],
    fingerprint: str,
) -> CachedFunction:
    return CachedFunction(
        func,
        return_type=return_type,
        recompute=recompute,
        arg_types=arg_types,
        fingerprint=fingerprint,
    )


def _task_context() -> tuple[Any, str, str | None] | None:
    """(worker, task key, tag) when running inside a Dask task, else None."""
    if "distributed" not in sys.modules:
        return None
    from distributed.worker import get_worker, thread_state

    key = getattr(thread_state, "key", None)
    if key is None:
        return None
    try:
        worker = get_worker()
    except ValueError:
        return None
    ts = worker.state.tasks.get(key)
    tag = (ts.annotations or {}).get("tag") if ts is not None else None
    return worker, key, tag if isinstance(tag, str) else None


def _report(task: tuple[Any, str, str | None] | None, name: str, hit: bool, seconds: float) -> None:
    if task is None:
        return
    worker, key, tag = task
    msg = {"key": str(key), "function": name, "tag": tag, "hit": hit, "seconds": seconds}
    with contextlib.suppress(Exception):  # telemetry never breaks a task
        worker.log_event(EVENT_TOPIC, msg)


@overload
def cacheable(func: Callable[..., Any], /) -> CachedFunction: ...


@overload
def cacheable(
    func: None = None,
    /,
    *,
    return_type: type | None = None,
    recompute: bool = False,
    **arg_types: Any,
) -> Callable[[Callable[..., Any]], CachedFunction]: ...


def cacheable(
    func: Callable[..., Any] | None = None,
    /,
    *,
    return_type: type | None = None,
    recompute: bool = False,
    **arg_types: Any,
) -> Any:
    """Cache a function's results on disk (and in a shared remote), keyed so that a hit
    is always the result the call would compute. See docs/guides/caching.rst."""
    if func is not None:
        return CachedFunction(
            func, return_type=return_type, recompute=recompute, arg_types=arg_types
        )

    def wrap(f: Callable[..., Any]) -> CachedFunction:
        return CachedFunction(f, return_type=return_type, recompute=recompute, arg_types=arg_types)

    return wrap
