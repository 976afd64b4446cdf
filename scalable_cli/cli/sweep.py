"""``scalable sweep``: find (and with ``--destroy``, delete) capacity no state holds."""

from __future__ import annotations

import click
from scalable.cli.common import (
    auto_approve_option,
    confirm,
    echo,
    file_option,
    json_option,
    print_json,
)
from scalable.errors import ScalableError
from scalable.providers.base import ProviderError
from scalable.units import format_duration, parse_duration


@click.command()
@file_option
@click.option("--destroy", is_flag=True, help="Delete what is found (asks first).")
@auto_approve_option
@click.option("--older-than", help="Only what is older, e.g. 2h.")
@click.option("--lineage", help="Only what carries this lineage.")
@json_option
def sweep(
    file: str | None, destroy: bool, auto_approve: bool, older_than: str | None,
    lineage: str | None, json_: bool,
) -> None:
    """Find capacity scalable created that no state of this manifest holds (dry run)."""
    from scalable.pricing.estimator import format_usd
    from scalable.sweep import find_lost
    from scalable.workspace import Workspace

    try:
        min_age = parse_duration(older_than) if older_than is not None else None
    except ValueError as exc:
        raise ScalableError(f"--older-than: {exc}", hint="e.g. --older-than 2h") from None
    first = Workspace.open(file, _any_target(file))
    names = list(first.loaded.manifest.targets)
    spaces = [first if n == first.spec.name else Workspace.open(file, n) for n in names]
    reachable = {st.lineage for ws in spaces if (st := ws.store.read()) is not None}
    lost, blind = find_lost(
        [(ws.spec.name, ws.provider) for ws in spaces],
        reachable,
        lineage=lineage,
        older_than=min_age,
    )
    destroyed: list[str] = []
    errors: list[str] = []
    if not json_:
        for b in blind:
            echo(f"Not swept: target {b}: this provider cannot list resources across lineages")
        if not lost:
            echo("No lost resources: everything scalable created here is held by a state.")
        else:
            echo(f"{len(lost)} resource(s) created by scalable that no state holds:\n")
            echo(
                f"  {'ADDRESS':24} {'TYPE':14} {'ID':22} {'LINEAGE':10} {'AGE':>8} "
                f"{'COST SO FAR':>12}"
            )
            for x in lost:
                d = x.found
                age = "?" if x.age_seconds is None else format_duration(x.age_seconds)
                echo(
                    f"  {d.address:24} {d.type:14} {d.id:22} {d.lineage[:8]:10} {age:>8} "
                    f"{format_usd(x.cost_so_far):>12}"
                )
    if lost and destroy:
        if not auto_approve:
            confirm(
                "Do you really want to destroy these resources?",
                "scalable will delete every resource listed above. There is no undo.",
            )
        for x in lost:
            try:
                x.provider.delete(x.record())
            except ProviderError as exc:
                errors.append(f"{x.found.address} ({x.found.id}): delete failed: {exc}")
                continue
            destroyed.append(x.found.id)
            if not json_:
                echo(f"{x.found.address} ({x.found.id}): Destruction complete")
    if json_:
        print_json(
            {
                "format_version": 1,
                "lost": [x.to_dict() for x in lost],
                "not_swept": blind,
                "destroyed": destroyed,
                "errors": errors,
            }
        )
    elif lost and not destroy:
        echo("\nThis was a dry run. To delete them: scalable sweep --destroy")
    elif lost:
        echo(f"\nSweep complete! Resources: {len(destroyed)} destroyed.")
    if errors:
        raise ScalableError("; ".join(errors), hint="run sweep again to retry")


def _any_target(file: str | None) -> str:
    from scalable.manifest.loader import load_manifest
    from scalable.workspace import manifest_path

    return next(iter(load_manifest(manifest_path(file)).manifest.targets))
