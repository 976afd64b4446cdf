"""``scalable cache`` (size, entries, hit rate by function) and ``scalable cache clear``.

Which cache: ``--dir``, else ``SCALABLE_CACHE_DIR``, else the target's manifest
``cache.directory``, else ``<manifest folder>/.scalable/cache`` (where a target's
workers write by default), else ``./.scalable/cache``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from scalable.cli.common import (
    Ctx,
    echo,
    fail,
    file_option,
    json_option,
    print_json,
    target_option,
)
from scalable.units import format_size, parse_duration


def cache_dir(directory: str | None, file: str | None, target: str | None) -> Path:
    if directory:
        return Path(directory).expanduser().absolute()
    if os.environ.get("SCALABLE_CACHE_DIR"):
        return Path(os.environ["SCALABLE_CACHE_DIR"]).expanduser().absolute()
    from scalable.workspace import DEFAULT_FILE

    path = Path(file or os.environ.get("SCALABLE_FILE") or DEFAULT_FILE)
    if not path.is_file():
        if file:
            fail(f"no manifest at {path}", hint="pass --dir to name the cache folder")
        return Path(".scalable/cache").absolute()
    from scalable.manifest.loader import load_manifest

    loaded = load_manifest(path)
    root = path.resolve().parent
    name = loaded.target_name(target or os.environ.get("SCALABLE_TARGET"))
    cfg = loaded.manifest.targets[name].cache
    if cfg is not None and cfg.directory:
        d = Path(cfg.directory).expanduser()
        return d if d.is_absolute() else root / d
    return root / ".scalable" / "cache"


def _rows(root: Path) -> tuple[list[dict[str, Any]], Any]:
    from scalable.cache.store import LocalStore, function_dir

    store = LocalStore(root)
    by_fn: dict[str, dict[str, Any]] = {}

    def row(folder: str) -> dict[str, Any]:
        return by_fn.setdefault(
            folder,
            {
                "function": folder,
                "entries": 0,
                "bytes": 0,
                "calls": 0,
                "hits": 0,
                "misses": 0,
                "hit_rate": None,
                "time_saved_seconds": 0.0,
            },
        )

    for e in store.entries():
        r = row(e.function)
        r["entries"] += 1
        r["bytes"] += e.size
    for name, s in store.stats().items():
        r = row(function_dir(name))
        r["function"] = name
        r["calls"] += s.calls
        r["hits"] += s.hits
        r["misses"] += s.misses
        r["time_saved_seconds"] += s.saved_seconds
    for r in by_fn.values():
        r["hit_rate"] = r["hits"] / r["calls"] if r["calls"] else None
    return sorted(by_fn.values(), key=lambda r: r["function"]), store


@click.group(invoke_without_command=True,
             help="Show or clear the @cacheable result cache.")
@file_option
@target_option
@click.option("--dir", "directory",
              help="Cache folder (default: the target's; env SCALABLE_CACHE_DIR).")
@json_option
@click.pass_context
def app(
    ctx: click.Context, file: str | None, target: str | None, directory: str | None,
    json_: bool,
) -> None:
    """Size, entries and hit rate by function."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = (directory, file, target)
        return
    root = cache_dir(directory, file, target)
    rows, _ = _rows(root)
    total_bytes = sum(r["bytes"] for r in rows)
    entries = sum(r["entries"] for r in rows)
    calls = sum(r["calls"] for r in rows)
    hits = sum(r["hits"] for r in rows)
    if json_:
        print_json(
            {
                "directory": str(root),
                "entries": entries,
                "bytes": total_bytes,
                "calls": calls,
                "hits": hits,
                "hit_rate": hits / calls if calls else None,
                "remote": os.environ.get("SCALABLE_CACHE_REMOTE") or None,
                "functions": rows,
            }
        )
        return
    echo(f"Cache: {root}")
    rate = f"{hits / calls:.0%}" if calls else "-"
    echo(f"  {entries} entries, {format_size(total_bytes)}; {calls} calls, {rate} hits")
    if not rows:
        echo("  (empty)")
        return
    from scalable.telemetry.report import fmt_seconds

    width = max(8, *(len(r["function"]) for r in rows))
    echo("")
    echo(
        f"  {'FUNCTION':<{width}}  {'ENTRIES':>12}  {'SIZE':>9}  {'CALLS':>7}  "
        f"{'HIT RATE':>8}  {'SAVED':>7}"
    )
    for r in rows:
        hr = f"{r['hit_rate']:.0%}" if r["hit_rate"] is not None else "-"
        echo(
            f"  {r['function']:<{width}}  {str(r['entries']) + ' entries':>12}  "
            f"{format_size(r['bytes']):>9}  {r['calls']:>7}  {hr:>8}  "
            f"{fmt_seconds(r['time_saved_seconds']):>7}"
        )


@app.command()
@click.option("--function", help="Only this function (module.name, or a unique name).")
@click.option("--older-than", help="Only entries last used before this long ago (30d, 12h).")
@click.pass_context
def clear(ctx: click.Context, function: str | None, older_than: str | None) -> None:
    """Remove entries (all, one function's, or those unused for a while)."""
    directory, file, target = ctx.obj or (None, None, None)
    root = cache_dir(directory, file, target)
    rows, store = _rows(root)
    age = None
    if older_than is not None:
        try:
            age = parse_duration(older_than)
        except ValueError as exc:
            fail(f"--older-than {older_than!r}: {exc}", hint="e.g. 30d, 12h, 90m")
    folder = None
    if function is not None:
        folder = _resolve(function, [r["function"] for r in rows])
    n = store.clear(function=folder, older_than=age)
    what = f" of {folder}" if folder else ""
    when = f" unused for {older_than}" if older_than else ""
    echo(f"Removed {n} cache entr{'y' if n == 1 else 'ies'}{what}{when} from {root}.")
    if Ctx.debug:
        echo(f"  swept {store.sweep_temp()} stale temp files")


def _resolve(name: str, known: list[str]) -> str:
    from scalable.cache.store import function_dir

    if name in known or function_dir(name) in known:
        return function_dir(name)
    matches = [k for k in known if k.endswith("." + name)]
    if len(matches) == 1:
        return function_dir(matches[0])
    if matches:
        fail(
            f"--function {name!r} is ambiguous: {', '.join(matches)}",
            hint="give the full module.name",
        )
    fail(
        f"no cached function {name!r}", hint="cached: " + (", ".join(known) if known else "(none)")
    )
