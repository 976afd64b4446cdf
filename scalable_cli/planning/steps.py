"""The apply step graph: a plan's changes as ordered steps, each with what may block it.

Pure functions over the plan and the recorded state (no provider, no I/O), in the
manner of Terraform's graph transformers: :func:`dependency_graph` adds the edges,
:func:`waves` levels them, :func:`step_graph` orders the steps — deletes from the
dependents down, creates from the dependencies up, updates growing what others stand
on first and shrinking it last — and :func:`hold` says, given what has failed so far,
whether a step must be skipped and why. The engine's executor runs the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from scalable.addrs import CONTROLLER, SCHEDULER
from scalable.planning.model import Change
from scalable.state.model import StateFile

Op = Literal["delete", "create", "update"]


class Blocked(Enum):
    """Why a step was not carried out."""

    USED_BY_UNDELETED = "used_by_undeleted"  # a delete: something using it stayed
    DEPENDENCY_FAILED = "dependency_failed"  # a create: what it needs failed
    NO_SCHEDULER = "no_scheduler"  # a create: there is no scheduler to join
    DEPENDENCY_NOT_UPDATED = "dependency_not_updated"  # an update: its dependency failed


@dataclass(frozen=True)
class Hold:
    """A step that must not run: the reason and the addresses behind it."""

    why: Blocked
    by: tuple[str, ...] = ()

    def words(self, address: str) -> str:
        """The apply error line (the words ``scalable apply`` has always printed)."""
        by = ", ".join(self.by)
        if self.why is Blocked.USED_BY_UNDELETED:
            return f"{address}: not deleted: {by} (which uses it) could not be deleted"
        if self.why is Blocked.DEPENDENCY_FAILED:
            return f"{address}: not created: {by} failed"
        if self.why is Blocked.DEPENDENCY_NOT_UPDATED:
            return f"{address}: not updated: {by} failed to update"
        return f"{address}: not created: no scheduler"


@dataclass(frozen=True)
class Step:
    """One change to carry out.

    ``wave``: steps of one op and wave run as one batch (creates go through
    ``create_many``). ``blocked_by``: the addresses in this apply whose failure holds
    this step (for a delete, what uses it; for a create or an update, what it needs).
    ``counts``: a delete that counts as destroyed (not the clean-up before a re-create).
    """

    op: Op
    change: Change
    wave: int
    blocked_by: frozenset[str] = frozenset()
    counts: bool = True

    @property
    def address(self) -> str:
        return self.change.address


def dependency_graph(state: StateFile, changes: list[Change]) -> dict[str, set[str]]:
    """address → addresses it needs, from the plan's resources and the recorded state.

    Providers declare ``depends_on``; on top of that everything waits for the scheduler
    except what the scheduler itself (transitively) needs — the rule the engine always
    had, so a provider that declares nothing gets: scheduler first, then the rest.
    """
    deps: dict[str, set[str]] = {r.address: set(r.depends_on) for r in state.resources}
    for c in changes:
        if c.resource is not None:
            deps[c.address] = set(c.resource.depends_on)
        elif c.record is not None:
            deps.setdefault(c.address, set(c.record.depends_on))
        else:
            deps.setdefault(c.address, set())
    needed: set[str] = set()
    stack = list(deps.get(SCHEDULER, ()))
    while stack:
        a = stack.pop()
        if a not in needed:
            needed.add(a)
            stack.extend(deps.get(a, ()))
    for addr, d in deps.items():
        if addr != SCHEDULER and addr not in needed:
            d.add(SCHEDULER)
    return deps


def waves(addresses: list[str], deps: dict[str, set[str]]) -> list[set[str]]:
    """``addresses`` in dependency levels: each level needs only earlier ones.

    Dependencies outside ``addresses`` (already there, or not being touched) are
    satisfied; a cycle (a provider bug) ends up in one last level rather than hanging.
    """
    todo = set(addresses)
    out: list[set[str]] = []
    while todo:
        level = {a for a in todo if not (deps.get(a, set()) & (todo - {a}))}
        if not level:
            out.append(todo)
            break
        out.append(level)
        todo -= level
    return out


def update_order(change: Change, deps: dict[str, set[str]]) -> int:
    """0: something others need, growing (or not changing price); 1: the rest;
    2: something others need, shrinking."""
    needed = any(change.address in d for a, d in deps.items() if a != change.address)
    if not needed:
        return 1
    return 2 if change.hourly_delta is not None and change.hourly_delta < 0 else 0


def step_graph(state: StateFile, changes: list[Change]) -> list[Step]:
    """The plan's actionable ``changes`` as steps in the order the executor runs them."""
    changes = [c for c in changes if c.action != "no-op"]
    deps = dependency_graph(state, changes)
    deletes = [c for c in changes if c.action in ("delete", "replace")]
    # A re-create of something gone still clears what is left of it first.
    stale = [c for c in changes if c.action == "create" and c.record is not None]
    creates = [c for c in changes if c.action in ("create", "replace")]
    updates = [c for c in changes if c.action == "update"]
    steps: list[Step] = []

    # Dependents go first (workers, then the scheduler, then what it stood on).
    going = deletes + stale
    going_addrs = {c.address for c in going}
    for n, wave in enumerate(reversed(waves([c.address for c in going], deps))):
        # The adaptive controller stops before the workers it would resize.
        in_wave = sorted(
            (c for c in going if c.address in wave), key=lambda c: c.address != CONTROLLER
        )
        for c in in_wave:
            users = frozenset(a for a in going_addrs if c.address in deps.get(a, ()))
            steps.append(Step("delete", c, n, users, counts=c in deletes))

    # What a resource needs is created before it, one batch per dependency level.
    for n, wave in enumerate(waves([c.address for c in creates], deps)):
        for c in creates:
            if c.address in wave:
                steps.append(Step("create", c, n, frozenset(deps.get(c.address, set()))))

    # In place: what others stand on grows first and shrinks last (a node pool is
    # resized up before workers are added, and down after they are gone).
    updating = {c.address for c in updates}
    for c in sorted(updates, key=lambda c: update_order(c, deps)):
        declared = set(c.resource.depends_on if c.resource else ())
        steps.append(Step("update", c, 0, frozenset(declared & updating)))
    return steps


def hold(step: Step, failed: set[str], *, have_scheduler: bool = True) -> Hold | None:
    """Whether ``step`` must be skipped, given the addresses whose steps failed so far.

    For a create, a failed scheduler is not a failed dependency in its own right: a
    worker without a scheduler is reported as NO_SCHEDULER (the executor lists those
    once, together), as is any step that needs a scheduler when none is up.
    """
    held = tuple(sorted(step.blocked_by & failed))
    if step.op == "delete":
        return Hold(Blocked.USED_BY_UNDELETED, held) if held else None
    if step.op == "update":
        return Hold(Blocked.DEPENDENCY_NOT_UPDATED, held) if held else None
    if held and held != (SCHEDULER,):
        return Hold(Blocked.DEPENDENCY_FAILED, held)
    if SCHEDULER in step.blocked_by and (held or not have_scheduler):
        return Hold(Blocked.NO_SCHEDULER)
    return None
