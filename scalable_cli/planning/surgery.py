"""Terraform's surgical plan options: ``--replace``, ``--only`` (Terraform's ``-target``)
and ``--refresh-only``.

Pure functions over a plan (no provider, no I/O). ``--replace`` is applied inside
:func:`scalable.planning.diff.diff` (it decides an action); this module checks the
addresses the user typed and narrows a full plan to the targeted part, the way
Terraform does: what a targeted resource needs (the scheduler, a node pool) comes
along, and so does whatever stands on a targeted resource that is deleted or replaced
(the workers of a replaced scheduler cannot keep running against the old one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from scalable import addrs
from scalable.errors import PlanError
from scalable.planning.model import Plan
from scalable.state.model import StateFile

ADDRESS_HINT = "addresses look like scheduler, workers.default[0] or workers.default (a group)"

TARGET_WARNING = """Warning: Resource targeting is in effect

You are creating a plan with the --only option, which means that the result of this
plan may not represent all of the changes requested by the current configuration.

The --only option is not for routine use, and is provided only for exceptional
situations such as recovering from errors or mistakes."""

APPLIED_TARGET_WARNING = """Warning: Applied changes may be incomplete

The plan was created with the --only option in effect, so some changes requested in
the configuration may have been ignored and the output values may not be fully
updated. Run the following command to verify that no other changes are pending:
    scalable plan"""

REFRESH_ONLY_NOTE = """This is a refresh-only plan, so scalable will not take any actions to undo
these. If you were expecting these changes then you can apply this plan to record the
updated values in the scalable state without changing any remote objects."""


def matches(address: str, pattern: str) -> bool:
    """``workers.gpu`` covers ``workers.gpu[3]``; an exact address covers itself."""
    return address == pattern or address.startswith(pattern + "[")


def check_addresses(option: str, patterns: Sequence[str], known: Iterable[str]) -> None:
    """Every ``pattern`` is well formed and names something in the manifest or the state."""
    known = list(known)
    for p in patterns:
        if addrs.parse(p) is None:
            raise PlanError(
                f"Invalid {option} address {p!r}: not a resource address", hint=ADDRESS_HINT
            )
        if not any(matches(a, p) for a in known):
            shown = ", ".join(sorted(known, key=addrs.sort_key)[:6]) or "none"
            raise PlanError(
                f"Invalid {option} address {p!r}: no resource in the manifest or the state "
                "has this address",
                hint=f"known addresses: {shown}{', …' if len(known) > 6 else ''}",
            )


def check_modes(
    *, destroy: bool, refresh: bool, refresh_only: bool, replace: Sequence[str]
) -> None:
    """Terraform's incompatible-option errors."""
    if refresh_only and destroy:
        raise PlanError(
            "Incompatible plan mode options: --refresh-only and --destroy are mutually exclusive"
        )
    if refresh_only and not refresh:
        raise PlanError(
            "Incompatible refresh options: it doesn't make sense to use "
            "--refresh-only at the same time as --no-refresh, because scalable "
            "would have nothing to do"
        )
    if refresh_only and replace:
        raise PlanError(
            "Invalid combination of options: --replace is not allowed in "
            "refresh-only mode, because it would change remote objects"
        )
    if destroy and replace:
        raise PlanError(
            "Invalid combination of options: --replace is not allowed with "
            "--destroy, which replaces nothing"
        )


def _closure(start: set[str], edges: dict[str, set[str]]) -> set[str]:
    seen = set(start)
    stack = list(start)
    while stack:
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def narrow(plan: Plan, state: StateFile, targets: Sequence[str]) -> Plan:
    """``plan`` with only the targeted changes, what they need, and what must go with them.

    Untargeted actionable changes are dropped (not shown as no-op: they were not decided
    on); the cost after is what is there now plus the kept changes.
    """
    plan.targets = list(targets)
    if not targets:
        return plan
    actionable = {c.address: c for c in plan.actionable}
    from scalable.planning.steps import dependency_graph  # an edit of a saved plan only

    deps = dependency_graph(state, plan.actionable)
    users: dict[str, set[str]] = {}
    for a, needs in deps.items():
        for n in needs:
            users.setdefault(n, set()).add(a)
    chosen = {a for a in actionable if any(matches(a, t) for t in targets)}
    # What the created or updated ones need (a delete needs nothing to go with it).
    building = {a for a in chosen if actionable[a].action != "delete"}
    chosen |= {
        a for a in _closure(building, deps) if a in actionable and actionable[a].action != "delete"
    }
    going = {a for a in chosen if a in actionable and actionable[a].action in ("delete", "replace")}
    chosen |= _closure(going, users)  # what stands on what is going
    plan.changes = [c for c in plan.changes if c.action == "no-op" or c.address in chosen]
    now = plan.cost.hourly_now
    after: float | None = now
    for c in plan.actionable:
        d = c.hourly_delta
        after = None if after is None or d is None else after + d
    plan.cost.hourly_after = after
    return plan
