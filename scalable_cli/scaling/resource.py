"""The ``controller`` resource: a provider wrapper that adds the adaptive controller.

For CLI-applied targets with adaptive groups, the controller runs as a detached local
process next to the state (``scalable.scaling.agent``). It is planned, created, observed,
discovered and deleted like any other resource, so ``destroy`` stops it, ``status`` shows
it, and ``apply`` replaces it if it died. Every other call goes to the wrapped provider.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalable.addrs import CONTROLLER, SCHEDULER
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
from scalable.providers.processes import (
    TAG_ADDRESS,
    TAG_KEY,
    TAG_LINEAGE,
    ProcessRef,
    spawn,
    tagged,
    terminate,
)
from scalable.spec import TargetSpec
from scalable.state.model import ResourceRecord

TYPE = "scalable.controller"
ADDRESS = CONTROLLER


class WithController(Provider):
    def __init__(self, inner: Provider) -> None:
        super().__init__(inner.target, inner.workdir)
        self.inner = inner
        self.name = inner.name

    def desired(self, target: TargetSpec | None = None) -> list[ResourceSpec]:
        target = target or self.target
        spec = ResourceSpec(
            address=ADDRESS, type=TYPE,
            attributes={"role": "controller", "groups": sorted(
                g.name for g in target.groups if g.adaptive)},
            depends_on=(SCHEDULER,),
        )
        return [*self.inner.desired(target), spec]

    def validate(self) -> None:
        self.inner.validate()

    def join_material(self) -> list[Path]:
        return self.inner.join_material()

    def updatable(self, before: dict[str, Any], after: dict[str, Any]) -> bool:
        return self.inner.updatable(before, after)

    def price(self, resource: ResourceSpec) -> Price:
        if resource.type == TYPE:
            return Price.free("runs beside the state")
        return self.inner.price(resource)

    def horizon_hours(self) -> float | None:
        return self.inner.horizon_hours()

    def startup_seconds(self) -> float:
        return self.inner.startup_seconds()

    def observe(self, records: Sequence[ResourceRecord]) -> dict[str, Observation]:
        ours = [r for r in records if r.type == TYPE]
        out = self.inner.observe([r for r in records if r.type != TYPE])
        for r in ours:
            ref = ProcessRef.from_meta(r.meta)
            out[r.address] = (
                Observation("alive") if ref and ref.alive()
                else Observation("gone", "controller process exited")
            )
        return out

    def discover(self, lineage: str) -> list[Discovered]:
        found = self.inner.discover(lineage)
        if self.inner.name == "local":
            # The local provider's discovery already sees every tagged local process.
            return [
                Discovered(d.address, TYPE, d.id, d.idempotency_key, d.meta)
                if d.address == ADDRESS else d
                for d in found
            ]
        return found + [
            Discovered(ADDRESS, TYPE, ref.id, tags.get(TAG_KEY, ""), ref.meta())
            for ref, tags in tagged(lineage)
            if tags.get(TAG_ADDRESS) == ADDRESS
        ]

    def create(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        if resource.type != TYPE:
            return self.inner.create(resource, ctx)
        log = self.workdir / "logs" / "controller.log"
        ref = spawn(
            [sys.executable, "-m", "scalable.scaling.agent",
             "--file", str(self.target.manifest_path), "--target", self.target.name],
            log=log,
            tags={TAG_LINEAGE: ctx.lineage, TAG_ADDRESS: ADDRESS, TAG_KEY: ctx.idempotency_key},
            env={"SCALABLE_STATE_DIR": str(self.workdir)},
            cwd=self.target.root,
        )
        if not ref.alive():
            raise ProviderError("the controller exited at once", hint=f"see {log}")
        return Created(id=ref.id, meta={**ref.meta(), "log": str(log)})

    def create_many(
        self, resources: Sequence[ResourceSpec], contexts: Sequence[CreateContext]
    ) -> list[Created | ProviderError]:
        pairs = list(zip(resources, contexts, strict=True))
        inner = [(r, c) for r, c in pairs if r.type != TYPE]
        results = iter(self.inner.create_many([r for r, _ in inner], [c for _, c in inner]))
        out: list[Created | ProviderError] = []
        for r, c in pairs:
            if r.type == TYPE:
                try:
                    out.append(self.create(r, c))
                except ProviderError as exc:
                    out.append(exc)
            else:
                out.append(next(results))
        return out

    def prepare_delete(self, records: Sequence[ResourceRecord], *,
                       scheduler: ResourceRecord | None = None) -> None:
        self.inner.prepare_delete([r for r in records if r.type != TYPE], scheduler=scheduler)

    def update(self, record: ResourceRecord, resource: ResourceSpec) -> Created:
        return self.inner.update(record, resource)

    def delete(self, record: ResourceRecord) -> None:
        if record.type != TYPE:
            self.inner.delete(record)
            return
        ref = ProcessRef.from_meta(record.meta)
        if ref is not None and ref.pid == os.getpid():
            return  # the controller destroying its target (on_budget: destroy) ends itself
        if ref is not None:
            terminate(ref, grace=10.0)

    def recover_outputs(self, record: ResourceRecord) -> dict[str, str]:
        return self.inner.recover_outputs(record)

    def client_security(self, outputs: dict[str, str]) -> Any | None:
        return self.inner.client_security(outputs)
