"""``scalable validate``, ``schema`` and ``init``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
from scalable.cli.common import echo, file_option
from scalable.errors import ScalableError
from scalable.manifest.loader import load_manifest
from scalable.manifest.schema import manifest_model
from scalable.manifest.starter import NAMES, starter
from scalable.registry import provider_class, provider_names
from scalable.spec import build_target
from scalable.workspace import manifest_path


@click.command()
@file_option
def validate(file: str | None) -> None:
    """Check the manifest: every error names its file, line, column and key.

    Each target's provider also runs its offline checks (no network), so what ``plan``
    would refuse offline is refused here too.
    """
    loaded = load_manifest(manifest_path(file))
    for name in loaded.manifest.targets:
        spec = build_target(loaded, name)
        try:
            provider_class(spec.provider)(spec, spec.workdir).check_config()
        except ScalableError as exc:  # the provider's words, placed in the file
            raise ScalableError(
                f"{loaded.path.name}: targets.{name}: {exc.message}", hint=exc.hint
            ) from None
        groups = ", ".join(
            f"{g.name}={g.count}"
            if not g.adaptive
            else f"{g.name}={g.adaptive.minimum}..{g.adaptive.maximum}"
            for g in spec.groups
        )
        echo(f"  {name}: provider {spec.provider}, workers {groups}")
    echo(f"Success! {loaded.path} is valid ({len(loaded.manifest.targets)} target(s)).")


@click.command()
def schema() -> None:
    """Print the manifest's JSON Schema (for editors)."""
    doc = manifest_model(tuple(provider_names())).model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "scalable.yaml"
    echo(json.dumps(doc, indent=2))


@click.command()
@click.option("--provider", "-p", default="local", show_default=True,
              help="local, slurm, aws or gke.")
@file_option
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--ci", help="Also write a CI pipeline: github or gitlab.")
def init(provider: str, file: str | None, force: bool, ci: str | None) -> None:
    """Write a commented starter manifest."""
    if provider not in NAMES:
        raise ScalableError(f"unknown provider {provider!r}", hint="local, slurm, aws or gke")
    path = manifest_path(file)
    if ci is not None:
        _write_ci(ci, force)
        if path.exists():  # a pipeline for the manifest that is there
            return
    if path.exists() and not force:
        raise ScalableError(f"{path} already exists", hint="pass --force to overwrite it")
    project = re.sub(r"[^A-Za-z0-9._-]", "-", Path.cwd().name).strip("-.") or "scalable"
    path.write_text(starter(provider, project))
    load_manifest(path)  # the starter must always validate
    echo(f"Wrote {path} (target {NAMES[provider]!r}). Next: scalable plan")


CI_FILES = {"github": Path(".github/workflows/scalable.yml"), "gitlab": Path(".gitlab-ci.yml")}


def _write_ci(kind: str, force: bool) -> None:
    """The pipeline of docs/examples/ci (package data, so an installed scalable has it)."""
    from importlib.resources import files

    if kind not in CI_FILES:
        raise ScalableError(f"--ci: unknown CI system {kind!r}", hint="github or gitlab")
    dest = CI_FILES[kind]
    if dest.exists() and not force:
        raise ScalableError(f"{dest} already exists", hint="pass --force to overwrite it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text((files("scalable") / "ci" / f"{kind}.yml").read_text())
    echo(f"Wrote {dest}: validate, plan -o, apply the saved plan, run a client, destroy "
         "(always). Set the manifest's state: to s3 or gcs so every run shares one state.")
