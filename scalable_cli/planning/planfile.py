"""Saved plans: ``plan --out FILE`` and ``apply FILE``.

A saved plan carries the state's lineage and serial and the manifest digest; apply
refuses it when either changed since, and then does exactly what it shows.
"""

from __future__ import annotations

import json
from pathlib import Path

from scalable.errors import PlanError
from scalable.planning.model import PLAN_FORMAT_VERSION, Plan
from scalable.state.model import StateFile
from scalable.state.store import atomic_write

KIND = "scalable-plan"


def save_plan(plan: Plan, path: Path) -> None:
    body = {"kind": KIND, **plan.to_dict(detail=True)}
    atomic_write(path, json.dumps(body, indent=1).encode() + b"\n", mode=0o600)


def load_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file") from None
    except ValueError as exc:
        raise PlanError(f"{path}: not a saved plan ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise PlanError(f"{path}: not a saved plan", hint="make one with `scalable plan -o FILE`")
    major = str(data.get("format_version", "0")).split(".")[0]
    if major != PLAN_FORMAT_VERSION.split(".")[0]:
        raise PlanError(f"{path}: plan format {data.get('format_version')} is not supported")
    plan = Plan.from_dict(data)
    if plan.objective is not None:
        from scalable.payloads import ObjectivePlan  # saved plans with objectives only

        try:
            ObjectivePlan.from_data(plan.objective)
        except (TypeError, ValueError) as exc:
            raise PlanError(f"{path}: key objective: {exc}",
                            hint="make a new plan with `scalable plan -o FILE`") from None
    return plan


def check_fresh(plan: Plan, state: StateFile | None, manifest_digest: str, target: str) -> None:
    if plan.target != target:
        raise PlanError(
            f"saved plan is for target {plan.target!r}, not {target!r}",
            hint=f"pass -t {plan.target}",
        )
    if plan.lineage is not None and (state is None or state.lineage != plan.lineage):
        raise PlanError("Saved plan does not match the given state (different lineage)",
                        hint="make a new plan with `scalable plan -o FILE`")
    current = state.serial if state else 0
    if plan.lineage is None and state is not None and state.serial:
        raise PlanError("Saved plan is stale: the state was created since it was made",
                        hint="make a new plan with `scalable plan -o FILE`")
    if current != plan.serial:
        raise PlanError(
            f"Saved plan is stale: state serial is {current}, the plan was made at {plan.serial}",
            hint="make a new plan with `scalable plan -o FILE`",
        )
    if plan.manifest_digest != manifest_digest:
        raise PlanError("Saved plan is stale: the manifest changed since it was made",
                        hint="make a new plan with `scalable plan -o FILE`")
