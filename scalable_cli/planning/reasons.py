"""Why a change is in a plan: a code and its facts, turned into words only when shown.

The planner decides *what* (a :class:`Why` and the numbers behind it); the renderer,
the JSON document and the dashboard say it in words through :func:`words`. A saved
plan keeps the words (the JSON document's ``reasons`` are strings, format 1.x); reading
one back gives reasons of kind :attr:`Why.SAVED` carrying those words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Why(Enum):
    GROUP_RESIZE = "group_resize"  # group, have, want
    RECREATE_GONE = "recreate_gone"  # reason (the backend's, may be empty)
    RECREATE_INTERRUPTED = "recreate_interrupted"  # an earlier destroy did not finish
    CHANGED = "changed"  # changes: ((key, before, after), ...)
    SCHEDULER_REPLACED = "scheduler_replaced"
    DESTROY_REQUESTED = "destroy_requested"  # gone: the backend's reason if already gone
    NOT_IN_MANIFEST = "not_in_manifest"  # gone
    GROUP_SHRINK = "group_shrink"  # group, have, want, gone
    ORPHAN = "orphan"
    REPLACE_REQUESTED = "replace_requested"  # --replace ADDR
    SAVED = "saved"  # text: read back from a saved plan


@dataclass(frozen=True)
class Reason:
    why: Why
    facts: dict[str, Any] = field(default_factory=dict, compare=True, hash=False)

    def __str__(self) -> str:
        return words(self)


def _gone(f: dict[str, Any]) -> str:
    return f" (already gone: {f['gone']})" if "gone" in f else ""


def words(r: Reason) -> str:
    """The reason as the plan shows it (Terraform's register: short, factual)."""
    f = r.facts
    if r.why is Why.GROUP_RESIZE:
        return f"group {f['group']}: {f['have']} → {f['want']} resources"
    if r.why is Why.RECREATE_GONE:
        return f"re-create: {f.get('reason') or 'gone'}"
    if r.why is Why.RECREATE_INTERRUPTED:
        return "re-create: an earlier destroy of it was interrupted"
    if r.why is Why.CHANGED:
        return ", ".join(f"{k}: {b!r} → {a!r}" for k, b, a in f["changes"])
    if r.why is Why.SCHEDULER_REPLACED:
        return "the scheduler is being replaced"
    if r.why is Why.DESTROY_REQUESTED:
        return "destroy requested" + _gone(f)
    if r.why is Why.NOT_IN_MANIFEST:
        return "no longer in the manifest" + _gone(f)
    if r.why is Why.GROUP_SHRINK:
        return f"group {f['group']}: {f['have']} → {f['want']} resources" + _gone(f)
    if r.why is Why.REPLACE_REQUESTED:
        return "as requested with --replace"
    if r.why is Why.ORPHAN:
        return "orphan left by an interrupted apply: not in state, deleting"
    return str(f.get("text", ""))


def saved(text: str) -> Reason:
    return Reason(Why.SAVED, {"text": text})
