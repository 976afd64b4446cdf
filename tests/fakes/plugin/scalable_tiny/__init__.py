"""A third-party provider, as a separate package would ship it (issue 12's proof).

Registered through the ``scalable.providers`` entry point only (see
``tests/fakes/plugin/entry_points.txt``); it declares its own manifest keys, and a
manifest uses them. It creates nothing real: its resources live in a JSON file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from scalable.manifest.schema import GroupConfig, StrictModel, TargetConfig
from scalable.pricing.estimator import Price
from scalable.providers.base import (
    CreateContext,
    Created,
    Discovered,
    Observation,
    Provider,
    ProviderError,
    ResourceSpec,
)
from scalable.spec import TargetSpec


class TinyKeys(StrictModel):
    MAX_WORKERS: ClassVar[int] = 3

    flavour: Literal["vanilla", "chocolate"] = "vanilla"


class TinyGroup(TinyKeys, GroupConfig):
    pass


class TinyTarget(TinyKeys, TargetConfig):
    cone: Literal["waffle", "cup"] = "waffle"
    price_per_scoop: float = Field(default=0.5, ge=0, le=10)


class TinyProvider(Provider):
    name = "tiny"
    target_model = TinyTarget
    group_model = TinyGroup

    def check_config(self) -> None:
        cfg = self.target.config_as(TinyTarget)
        if cfg.cone == "cup" and any(
            g.settings_as(TinyGroup).flavour == "chocolate" for g in self.target.groups
        ):
            raise ProviderError("chocolate is served in a waffle cone only", hint="cone: waffle")

    def desired(self, target: TargetSpec | None = None) -> list[ResourceSpec]:
        target = target or self.target  # the engine passes the target at its current counts
        cfg = target.config_as(TinyTarget)
        out = [ResourceSpec("scheduler", "tiny.counter", {"cone": cfg.cone})]
        for g in target.groups:
            keys = g.settings_as(TinyGroup)
            for i in range(g.count):
                out.append(
                    ResourceSpec(
                        f"workers.{g.name}[{i}]",
                        "tiny.scoop",
                        {"flavour": keys.flavour},
                        group=g.name,
                        depends_on=("scheduler",),
                    )
                )
        return out

    def price(self, resource: ResourceSpec) -> Price:
        cfg = self.target.config_as(TinyTarget)
        if resource.type == "tiny.counter":
            return Price.free("the counter")
        return Price(hourly=cfg.price_per_scoop, source="tiny menu")

    def _db(self) -> Path:
        return self.workdir / "tiny.json"

    def _load(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._db().read_text()))
        except FileNotFoundError:
            return {}

    def observe(self, records: Sequence[object]) -> dict[str, Observation]:
        live = self._load()
        return {
            r.address: Observation("alive" if r.id in live else "gone")  # type: ignore[attr-defined]
            for r in records
        }

    def discover(self, lineage: str) -> list[Discovered]:
        return []

    def create(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        live = self._load()
        live[ctx.idempotency_key] = resource.address
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._db().write_text(json.dumps(live))
        return Created(id=ctx.idempotency_key)

    def delete(self, record: object) -> None:
        live = self._load()
        live.pop(record.id, None)  # type: ignore[attr-defined]
        self._db().write_text(json.dumps(live))
