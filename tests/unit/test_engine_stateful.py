"""The engine as a state machine (Hypothesis stateful), against the fault-injecting fake.

Rules: edit the counts, apply, crash mid-apply (before or after the backend acted),
delete something behind scalable's back, ``state rm``, change the provider's layout
(a different provider over the same backend), destroy. After every step: the state
file parses; every live thing of ours is recorded or carries the state's lineage (so
discovery finds it); after an apply without errors what exists is what is desired;
after a destroy without errors nothing of ours is alive. Resources taken out of state
with ``state rm`` are allowed to stay (that is what forgetting one means) and are
excluded from the last two checks.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from scalable.addrs import SCHEDULER
from scalable.engine import Engine
from scalable.state.model import StateFile
from scalable.state.store import LocalStore

from tests.fakes.provider import Crash, World, fake_provider

# A few seconds on a loaded machine: short programs, no deadline (the load varies).
settings.register_profile(
    "engine-stateful",
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
)
OPS = st.sampled_from(["create", "delete", "update"])
ADDRESSES = st.sampled_from(
    [SCHEDULER, "workers.default[0]", "workers.default[1]", "node_pool.default"]
)


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="scalable-stateful-"))
        self.store = LocalStore(self.dir / ".scalable" / "t")
        self.world = World()
        self.workers = 1
        self.pools = False
        self.forgotten: set[str] = set()
        self.last: tuple[str, list[str]] | None = None  # ("apply" | "destroy", errors)

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def engine(self) -> Engine:
        p = fake_provider(
            self.workers, world=self.world, pools=self.pools, workdir=self.store.folder
        )
        return Engine(p, self.store)

    def _run(self, destroy: bool) -> list[str]:
        engine = self.engine()
        return engine.execute(engine.plan(destroy=destroy), wait=False).errors

    # -- rules ----------------------------------------------------------------------
    @rule(n=st.integers(min_value=0, max_value=3))
    def edit_counts(self, n: int) -> None:
        self.workers = n
        self.last = None

    @rule()
    def change_provider(self) -> None:
        self.pools = not self.pools
        self.last = None

    @rule()
    def apply(self) -> None:
        self.last = ("apply", self._run(destroy=False))

    @rule(op=OPS, address=ADDRESSES, after=st.booleans())
    def crash_mid_apply(self, op: str, address: str, after: bool) -> None:
        self.world.crash(op, address, when="after" if after else "before")  # type: ignore[arg-type]
        try:
            errors = self._run(destroy=False)
        except Crash:
            self.last = None
        else:
            self.last = ("apply", errors)
        self.world.faults.clear()  # a crash that did not happen does not linger

    @rule(address=ADDRESSES)
    def delete_behind_our_back(self, address: str) -> None:
        self.world.kill(address)
        self.last = None

    @precondition(lambda self: bool((self.store.read() or StateFile("t", "f")).resources))
    @rule(data=st.data())
    def state_rm(self, data: st.DataObject) -> None:
        state = self.store.read()
        assert state is not None
        rec = data.draw(st.sampled_from(sorted(state.resources, key=lambda r: r.address)))
        state.remove(rec.address)
        self.store.write(state)
        if rec.id:
            self.forgotten.add(rec.id)
        self.forgotten |= {t.id for t in self.world.things.values() if t.key == rec.idempotency_key}
        self.last = None

    @rule()
    def destroy(self) -> None:
        self.last = ("destroy", self._run(destroy=True))

    # -- invariants -------------------------------------------------------------------
    @invariant()
    def state_parses_and_everything_alive_is_findable(self) -> None:
        state = self.store.read()  # parses, or raises
        if state is None:
            assert self.world.things == {}
            return
        recorded = {r.id for r in state.resources if r.id}
        keys = {r.idempotency_key for r in state.resources}
        for t in self.world.things.values():
            assert t.id in recorded or t.key in keys or t.lineage == state.lineage, t

    @invariant()
    def a_clean_apply_makes_what_is_desired(self) -> None:
        if self.last is None or self.last[1]:
            return
        state = self.store.read()
        assert state is not None
        ours = {t.id for t in self.world.ours(state.lineage)} - self.forgotten
        if self.last[0] == "destroy":
            assert state.resources == [] and ours == set()
            return
        desired = {s.address for s in self.engine().provider.desired()}
        assert {r.address for r in state.resources} == desired
        assert all(r.status == "ready" for r in state.resources)
        assert {r.id for r in state.resources} == ours


EngineMachine.TestCase.settings = settings.get_profile("engine-stateful")
test_engine_state_machine = EngineMachine.TestCase
