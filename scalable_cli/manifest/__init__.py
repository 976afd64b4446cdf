"""The manifest: schema, loading with positions, starter files."""

from scalable.manifest.loader import LoadedManifest, load_manifest, parse_manifest
from scalable.manifest.schema import Manifest

__all__ = ["LoadedManifest", "Manifest", "load_manifest", "parse_manifest"]
