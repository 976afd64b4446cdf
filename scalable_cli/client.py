"""A Dask client that understands ``tag=``: it labels tasks and routes them to groups.

``tag`` always becomes a task annotation (telemetry groups by it). Where worker groups
declare tags, a tagged task asks for that group's resource (``tag-<name>``), so it runs
only there; a tag that no group declares is an error at submit time, never a hang.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import dask
from distributed import Client
from scalable.providers.commands import GPU_RESOURCE, tag_resource
from scalable.spec import TargetSpec


class UnknownTag(ValueError):
    pass


class NoGpuWorkers(ValueError):
    """``resources={"GPU": n}`` that no group's workers can give: it would wait forever."""


class ScalableClient(Client):
    def __init__(self, *args: Any, spec: TargetSpec | None = None, **kwargs: Any) -> None:
        self._scalable_tags: dict[str, str] = dict(spec.declared_tags) if spec else {}
        # The most GPUs one worker of this target has (None: no manifest to ask).
        self._max_gpus = max((g.gpus for g in spec.groups), default=0) if spec else None
        cache = spec.config.cache if spec else None
        # Tags whose calls skip the cache (manifest `cache: {tags: {NAME: false}}`).
        self._uncached_tags = frozenset(t for t, on in cache.tags.items() if not on) if (
            cache is not None) else frozenset()
        super().__init__(*args, **kwargs)

    def _route(
        self, tag: str | None, resources: dict[str, float] | None
    ) -> dict[str, float] | None:
        wanted = (resources or {}).get(GPU_RESOURCE, 0)
        if self._max_gpus is not None and wanted > self._max_gpus:
            raise NoGpuWorkers(
                f"resources GPU={wanted:g}: no worker group of this target has that many "
                f"GPUs per worker (most: {self._max_gpus}); set gpus: on a group in "
                "scalable.yaml"
            )
        if tag is None or not self._scalable_tags:
            return resources
        if tag not in self._scalable_tags:
            declared = ", ".join(sorted(self._scalable_tags))
            raise UnknownTag(
                f"tag {tag!r} is not declared by any worker group (declared: {declared}); "
                "add it to a group's tags: in scalable.yaml"
            )
        return {**(resources or {}), tag_resource(tag): 1}

    def _tagged(self, tag: str | None) -> Any:
        return dask.annotate(tag=tag) if tag is not None else nullcontext()

    def _uncached(self, func: Callable[..., Any], tag: str | None) -> Callable[..., Any]:
        if tag is not None and tag in self._uncached_tags:
            from scalable.cache.decorator import CachedFunction

            if isinstance(func, CachedFunction):
                return func.func
        return func

    def submit(self, func: Callable[..., Any], *args: Any, tag: str | None = None,
               **kwargs: Any) -> Any:
        func = self._uncached(func, tag)
        kwargs["resources"] = self._route(tag, kwargs.get("resources"))
        with self._tagged(tag):
            return super().submit(func, *args, **kwargs)

    def map(
        self, func: Callable[..., Any], *iterables: Any, tag: str | None = None, **kwargs: Any
    ) -> Any:
        func = self._uncached(func, tag)
        kwargs["resources"] = self._route(tag, kwargs.get("resources"))
        with self._tagged(tag):
            return super().map(func, *iterables, **kwargs)

    def gather(self, futures: Any, *args: Any, **kwargs: Any) -> Any:
        """``Client.gather``; work cancelled because the budget ran out raises
        ``BudgetExhausted`` (naming budget and spend) instead of a bare cancellation."""
        from distributed.client import FutureCancelledError

        try:
            return super().gather(futures, *args, **kwargs)
        except FutureCancelledError as exc:
            from scalable.scaling.budget import BudgetExhausted

            budget = BudgetExhausted.from_message(exc.msg or "")
            if budget is None:
                raise
            raise budget from exc
