"""Human rendering of a plan, in Terraform's words and symbols, with a cost block."""

from __future__ import annotations

from scalable.planning import surgery
from scalable.planning.model import Change, Plan
from scalable.planning.reasons import words
from scalable.pricing.estimator import format_usd

SYMBOL = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "no-op": " "}
HEADER = {
    "create": "will be created",
    "update": "will be updated in-place",
    "replace": "must be replaced",
    "delete": "will be destroyed",
}
COLOR = {"create": "32", "update": "33", "replace": "35", "delete": "31"}


class Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self(text, "1")


def _value(v: object) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _attrs(change: Change, style: Style) -> list[str]:
    before = change.before or {}
    after = change.after or {}
    lines: list[str] = []
    keys = list(after) if change.action != "delete" else list(before)
    for k in keys:
        b, a = before.get(k), after.get(k)
        if change.action in ("update", "replace") and b != a:
            lines.append(f"      {style('~', COLOR['update'])} {k} = {_value(b)} → {_value(a)}")
        elif change.action == "delete":
            lines.append(f"      {style('-', COLOR['delete'])} {k} = {_value(b)}")
        elif change.action == "create":
            lines.append(f"      {style('+', COLOR['create'])} {k} = {_value(a)}")
    return lines


def render_change(change: Change, style: Style, verbose: bool = True) -> list[str]:
    sym = SYMBOL[change.action]
    head = f"  # {style.bold(change.address)} {HEADER[change.action]}"
    if change.reasons:
        head += f" ({'; '.join(words(r) for r in change.reasons)})"
    lines = [head]
    price = ""
    if change.hourly_delta is None:
        price = "  cost: unknown"
    elif change.hourly_delta:
        sign = "+" if change.hourly_delta > 0 else "-"
        price = f"  {sign}{format_usd(abs(change.hourly_delta))}/h"
    lines.append(f"  {style(sym, COLOR[change.action])} {change.type} \"{change.address}\"{price}")
    if verbose:
        lines.extend(_attrs(change, style))
    return lines


def render_plan(plan: Plan, color: bool = False, compact_after: int = 12) -> str:
    style = Style(color)
    out: list[str] = []
    if plan.targets:
        out.extend([surgery.TARGET_WARNING, ""])
    notable = [d for d in plan.drift if d.kind != "pending"]
    if notable:
        out.append(style.bold("Note: Objects have changed outside of scalable"))
        out.append("")
        for d in notable:
            word = {"gone": "is gone", "orphan": "is not in state", "adopted": "adopted",
                    "changed": "was changed"}[d.kind]
            out.append(f"  # {d.address} ({d.type}) {word}: {d.reason}")
        out.append("")
    pending = [d for d in plan.drift if d.kind == "pending"]
    if pending:
        out.append(f"Capacity on its way ({len(pending)} pending):")
        for d in pending[:10]:
            out.append(f"  … {d.address}: {d.reason}")
        if len(pending) > 10:
            out.append(f"  … and {len(pending) - 10} more")
        out.append("")
    actionable = plan.actionable
    if plan.refresh_only:
        return _refresh_only(plan, style, out, bool(notable))
    if not actionable:
        if plan.adopted:
            out.append(f"No changes to capacity; {len(plan.adopted)} record(s) will be adopted "
                       "into state on apply.")
        else:
            out.append(style.bold("No changes.") + " Capacity matches the manifest.")
        out.extend(_groups_block(plan))
        out.extend(_cost_block(plan, style))
        return "\n".join(out) + "\n"
    used = sorted({c.action for c in actionable}, key=list(SYMBOL).index)
    out.append("scalable will perform the following actions:")
    out.append("")
    shown = 0
    for change in actionable:
        verbose = shown < compact_after
        out.extend(render_change(change, style, verbose=verbose))
        if verbose:
            out.append("")
        shown += 1
    if shown > compact_after:
        out.append("")
    out.append("Resource actions are indicated with the following symbols:")
    for action in used:
        label = {"create": "create", "update": "update in-place", "delete": "destroy",
                 "replace": "destroy and then create replacement"}[action]
        out.append(f"  {style(SYMBOL[action], COLOR[action])} {label}")
    out.append("")
    n = plan.counts
    out.append(style.bold(
        f"Plan: {n['add']} to add, {n['change']} to change, {n['destroy']} to destroy."
    ))
    out.extend(_groups_block(plan))
    out.extend(_cost_block(plan, style))
    return "\n".join(out) + "\n"


def _groups_block(plan: Plan) -> list[str]:
    """What each group's workers run in and hold; shown when any group runs in a
    container or has GPUs."""
    if not any(g.get("container") or g.get("gpus") for g in plan.groups):
        return []
    out = ["", "Worker groups:"]
    for g in plan.groups:
        tags = f" [tags: {', '.join(g['tags'])}]" if g.get("tags") else ""
        gpus = ""
        if g.get("gpus"):
            kind = f" {g['gpu_type']}" if g.get("gpu_type") else ""
            gpus = f" with {g['gpus']}{kind} GPU(s) each"
        head = f"  {g['name']}: {g['workers']} worker(s){gpus}{tags}"
        c = g.get("container")
        if not c:
            out.append(f"{head}, plain processes")
            continue
        out.append(f"{head}, {c['runtime']} image {c['image']}")
        for src, dst in (c.get("binds") or {}).items():
            out.append(f"      bind {src} → {dst}")
        if c.get("env"):
            out.append(f"      env {', '.join(c['env'])}")
        if c.get("options"):
            out.append(f"      options {' '.join(c['options'])}")
    return out


def _refresh_only(plan: Plan, style: Style, out: list[str], drifted: bool) -> str:
    if drifted or plan.refreshed or plan.forget or plan.adopted:
        out.append(surgery.REFRESH_ONLY_NOTE)
        out.append("")
        out.append(style.bold(
            f"Refresh-only: {len(plan.refreshed)} to update in state, {len(plan.forget)} to "
            f"forget, {len(plan.adopted)} to adopt; no change to capacity."))
    else:
        out.append(style.bold("No changes.") + " Your infrastructure still matches the "
                   "configuration.")
        out.append("")
        out.append("scalable has checked that the real remote objects still match the result "
                   "of your most recent changes, and found no differences.")
    return "\n".join(out) + "\n"


def _cost_block(plan: Plan, style: Style) -> list[str]:
    c = plan.cost
    out = ["", style.bold("Cost estimate:")]
    delta = c.hourly_delta
    sign = "" if delta is None else ("+" if delta >= 0 else "-")
    delta_s = "unknown" if delta is None else f"{sign}{format_usd(abs(delta))}"
    out.append(
        f"  {format_usd(c.hourly_now)}/hour now → {format_usd(c.hourly_after)}/hour after "
        f"({delta_s})"
    )
    if c.horizon_hours:
        total = format_usd(c.horizon_total)
        out.append(f"  over the {c.horizon_hours:g} h horizon: {total}")
    if c.ranges:
        # The plan counts each group's first choice; failover may land on a dearer one.
        span = f"{format_usd(c.hourly_after_min)}–{format_usd(c.hourly_after_max)}/hour"
        line = f"  with fallback choices: {span}"
        if c.horizon_hours:
            line += f"; worst case over the horizon: {format_usd(c.horizon_total_max)}"
        out.append(line)
        for r in c.ranges:
            prices = " → ".join(f"{n} {format_usd(h)}/h" for n, h in r.choices)
            out.append(f"    {r.group} (×{r.resources}): {prices}; the first is counted")
    if c.core_hours_after:
        out.append(f"  core-hours over the horizon: {c.core_hours_after:g}")
    if c.node_hours_after:
        out.append(f"  node-hours over the horizon: {c.node_hours_after:g} (whole-node "
                   "allocations)")
    if len(c.by_group) > 1:  # each group priced with its own hardware
        parts = [f"{g} {'unknown' if v is None else format_usd(v) + '/h'}"
                 for g, v in c.by_group.items()]
        out.append(f"  by group: {' · '.join(parts)}")
    for note in c.notes:
        out.append(f"  {note}")
    if c.unknown:
        out.append(f"  {len(c.unknown)} price(s) unknown (not counted as $0):")
        for u in c.unknown[:10]:
            out.append(f"    - {u}")
        if len(c.unknown) > 10:
            out.append(f"    - … and {len(c.unknown) - 10} more")
    return out
