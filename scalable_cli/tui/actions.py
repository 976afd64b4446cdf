"""Scale requests from the dashboard: checked and previewed first, then sent to the engine.

``preview`` answers "what would one worker more (or less) in this group do?": it
refuses what the engine would not do (with the reason and a hint) and otherwise plans
the change with a refresh, exactly as ``scalable plan`` would with that count.
``apply`` hands the count to ``Engine.scale``, which takes the state lock, writes the
group's count into ``state.scale``, records a ``scale_decision`` event and applies the
plan, like the adaptive controller does.

Only adaptive groups are scaled. A fixed group's size (``max_workers``) belongs to the
manifest: a count set from here would be undone by the next ``scalable apply``, so the
request is refused with that explanation. Within an adaptive group, the controller
keeps applying its policy: a manual +1 is kept while there is work for it and is
scaled back down like any other worker once the group stays idle (``wait_count``
readings, ``cooldown``); raise ``adaptive.minimum`` to pin capacity.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass, field

from scalable.errors import ScalableError
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.planning.render import SYMBOL
from scalable.pricing.estimator import format_usd
from scalable.workspace import Workspace


class ScaleRefused(ScalableError):
    pass


@dataclass
class ScaleRequest:
    group: str
    before: int
    after: int
    summary: str  # "Plan: 1 to add, 0 to change, 0 to destroy."
    cost: str  # "$/hour: $0.00 → $0.00"
    changes: list[str] = field(default_factory=list)

    @property
    def question(self) -> str:
        more = "more" if self.after > self.before else "less"
        return (f"Scale group {self.group!r} from {self.before} to {self.after} workers "
                f"(one {more})?")

    @property
    def detail(self) -> str:
        lines = [self.summary, self.cost]
        if self.changes:
            lines.append("")
            lines += self.changes[:6]
            if len(self.changes) > 6:
                lines.append(f"  … and {len(self.changes) - 6} more")
        lines += ["", "Applied under the state lock, like `scalable apply`."]
        return "\n".join(lines)


def who() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:
        return "unknown"


def fresh(ws: Workspace) -> Workspace:
    """The target opened anew: a request plans against the manifest as it is now, and
    never shares a provider object with the dashboard's polling thread."""
    return Workspace.open(ws.spec.manifest_path, ws.spec.name)


def preview(ws: Workspace, group: str, delta: int) -> ScaleRequest:
    """Check a request for ``delta`` workers in ``group`` and plan it (no changes made)."""
    ws = fresh(ws)
    spec = ws.spec
    try:
        g = spec.group(group)
    except KeyError:
        raise ScaleRefused(f"target {spec.name!r} has no group {group!r}") from None
    manifest = spec.manifest_path.name
    if g.adaptive is None:
        raise ScaleRefused(
            f"group {group!r} has a fixed size (max_workers: {g.count}) that {manifest} owns",
            hint=f"change max_workers in {manifest} and run `scalable apply`, or give the "
                 "group an adaptive range to scale it from here",
        )
    state = ws.store.read()
    if state is None or SCHEDULER_ADDRESS not in state.outputs:
        raise ScaleRefused(f"target {spec.name!r} has no scheduler",
                           hint=f"run `scalable apply -t {spec.name}` first")
    lo, hi = g.adaptive.minimum, g.adaptive.maximum
    current = g.adaptive.clamp(state.scale.get(group, g.count))
    after = current + delta
    if after > hi:
        raise ScaleRefused(f"group {group!r} is at its adaptive maximum ({hi} workers)",
                           hint=f"raise adaptive.maximum in {manifest}")
    if after < lo:
        raise ScaleRefused(f"group {group!r} is at its adaptive minimum ({lo} workers)",
                           hint=f"lower adaptive.minimum in {manifest}")

    plan = ws.engine(owner="cli", record=False).plan(scale={group: after})
    counts = plan.counts
    summary = (f"Plan: {counts['add']} to add, {counts['change']} to change, "
               f"{counts['destroy']} to destroy.")
    cost = (f"$/hour: {format_usd(plan.cost.hourly_now)} → "
            f"{format_usd(plan.cost.hourly_after)}")
    changes = [f"  {SYMBOL[c.action]} {c.address}"
               + (f"  ({'; '.join(map(str, c.reasons))})" if c.reasons else "")
               for c in plan.actionable]
    return ScaleRequest(group, current, after, summary, cost, changes)


def apply(ws: Workspace, request: ScaleRequest, *, lock_timeout: float = 30.0) -> tuple[str, bool]:
    """Send the request to the engine: (what happened, whether it went through)."""
    ws = fresh(ws)
    engine = ws.engine(owner="cli")
    delta = request.after - request.before
    reason = f"manual {delta:+d} from the dashboard ({who()})"
    result = engine.scale({request.group: request.after}, {request.group: reason},
                          lock_timeout=lock_timeout)
    if result is None:
        state = ws.store.read()
        now = state.scale.get(request.group) if state is not None else None
        return (f"{request.group}: nothing to change (the count is already {now})"
                if now is not None else f"{request.group}: nothing changed", True)
    done = f"{result.added} added, {result.changed} changed, {result.destroyed} destroyed"
    if result.errors:
        return (f"{request.group}: {request.before} → {request.after} partly applied "
                f"({done}); {result.errors[0]}", False)
    return f"{request.group}: {request.before} → {request.after} applied ({done})", True
