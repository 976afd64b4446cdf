"""Reading a manifest: YAML with positions, ``${VAR}`` expansion, errors that point.

Every error names the file, line, column and key, with a hint, e.g.::

    scalable.yaml:5:5: targets.local.max_wokers: unknown key (did you mean 'max_workers'?)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from scalable.errors import ManifestError
from scalable.manifest.schema import TARGET_CLASSES, Manifest

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers: ``04:00:00`` stays a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT,
    re.compile(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"
    ),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


@dataclass(frozen=True)
class LoadedManifest:
    path: Path
    manifest: Manifest
    raw: dict[str, Any]

    @property
    def root(self) -> Path:
        return self.path.parent

    def target_name(self, requested: str | None) -> str:
        names = list(self.manifest.targets)
        name = requested or self.manifest.default_target
        if name is None:
            if len(names) == 1:
                return names[0]
            if "local" in names:
                return "local"
            raise ManifestError(
                f"{self.path.name}: several targets and no default_target",
                hint=f"pass -t/--target ({', '.join(names)}) or set default_target",
            )
        if name not in self.manifest.targets:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"targets: {', '.join(names)}"
            if "." in name or "[" in name or name == "scheduler":
                # Terraform's -target is --only here: -t/--target names a manifest target.
                hint = f"-t/--target names a manifest target; for one resource use --only {name}"
            raise ManifestError(f"{self.path.name}: no target named {name!r}", hint=hint)
        return name

    def target_digest(self, name: str) -> str:
        """A digest of what the target asks for; a saved plan is stale when it changes."""
        body = {
            "project": self.manifest.project.model_dump(),
            "target": name,
            "config": self.manifest.targets[name].model_dump(mode="json"),
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _where(path: Path, node: yaml.Node | None) -> str:
    if node is None:
        return f"{path.name}"
    m = node.start_mark
    return f"{path.name}:{m.line + 1}:{m.column + 1}"


def _expand(path: Path, node: yaml.Node, loader: _Loader, keypath: str) -> None:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in scalars; reject duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, yaml.Node] = {}
        for knode, vnode in node.value:
            key = knode.value
            if key in seen:
                raise ManifestError(
                    f"{_where(path, knode)}: {keypath + '.' if keypath else ''}{key}: "
                    f"duplicate key (first at line {seen[key].start_mark.line + 1})",
                    hint="remove one of them",
                )
            seen[key] = knode
            _expand(path, vnode, loader, f"{keypath}.{key}" if keypath else str(key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _expand(path, item, loader, f"{keypath}[{i}]")
    elif isinstance(node, yaml.ScalarNode) and "${" in node.value:

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ManifestError(
                f"{_where(path, node)}: {keypath}: environment variable {name} is not set",
                hint=f"export {name}=… or write ${{{name}:-default}}",
            )

        node.value = _VAR_RE.sub(sub, node.value)
        if node.style is None:  # a plain scalar: re-type the expanded text
            node.tag = loader.resolve(yaml.ScalarNode, node.value, (True, False))


def _node_at(
    root: yaml.Node | None, loc: tuple[int | str, ...], want_key: bool
) -> yaml.Node | None:
    """The YAML node at a pydantic error location (its key node if ``want_key``).

    Location parts that name no node (a union's discriminator tag) are skipped.
    """
    node = root
    key_node: yaml.Node | None = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for knode, vnode in node.value:
                if knode.value == part:
                    node, key_node = vnode, knode
                    break
            else:
                key_node = None
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and part < len(node.value)
        ):
            node, key_node = node.value[part], None
    return (key_node or node) if want_key else node


def _fields_at(data: Any, loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed beside the last part of ``loc`` (for 'did you mean')."""
    model: Any = Manifest
    value = data
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                continue  # discriminator tag
            model = field.annotation
            value = value.get(part) if isinstance(value, dict) else None
            continue
        origin = typing.get_origin(model)
        args = typing.get_args(model)
        if origin is typing.Annotated:
            model, args = args[0], typing.get_args(args[0])
            origin = typing.get_origin(model)
        if origin is dict:
            model = args[1]
            value = value.get(part) if isinstance(value, dict) else None
            if typing.get_origin(model) is typing.Annotated:
                model = typing.get_args(model)[0]
            if isinstance(value, dict) and model is not None and "provider" in value:
                model = TARGET_CLASSES.get(str(value["provider"]), model)
        elif origin is list:
            model = args[0]
            value = value[part] if isinstance(value, list) and isinstance(part, int) else None
        else:
            # Optional[X]: take the model among the args.
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(models) == 1:
                model = models[0]
                field = model.model_fields.get(str(part))
                if field is not None:
                    model = field.annotation
                    value = value.get(part) if isinstance(value, dict) else None
    if typing.get_origin(model) in (typing.Union, __import__("types").UnionType):
        models = [a for a in typing.get_args(model) if isinstance(a, type)]
        model = next((m for m in models if issubclass(m, BaseModel)), model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _hint(err: Any, data: Any) -> str | None:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden" and loc:
        allowed = _fields_at(data, loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        if close:
            return f"did you mean {close[0]!r}?"
        if allowed:
            return "allowed keys here: " + ", ".join(allowed)
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return "provider must be one of: local, slurm, aws, gke"
    if kind == "missing":
        return f"add '{loc[-1]}:'"
    return "see `scalable schema` or docs/manifest.rst"


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown provider {err['ctx']['tag']!r}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _dotted(loc: tuple[int | str, ...], data: Any) -> str:
    """``targets.local.max_workers``: the key path as written in the file."""
    out = ""
    value = data
    for part in loc:
        in_dict = isinstance(value, dict) and part in value
        in_list = isinstance(value, list) and isinstance(part, int) and part < len(value)
        if in_dict or in_list:
            value = value[part]
        elif isinstance(part, str) and part in TARGET_CLASSES:
            continue  # a discriminator tag, not a key of the file
        else:
            value = None
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_manifest(text: str, path: Path) -> LoadedManifest:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ManifestError(f"{path.name}: the file is empty", hint="run `scalable init`")
        _expand(path, node, loader, "")
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path.name}:{mark.line + 1}:{mark.column + 1}" if mark else path.name
        raise ManifestError(
            f"{where}: invalid YAML: {exc.problem}", hint="check indentation and quoting"
        ) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ManifestError(
            f"{_where(path, node)}: the manifest must be a mapping with 'targets:'",
            hint="run `scalable init` for a starter manifest",
        )
    if "project" not in data:
        data = {**data, "project": {"name": _default_project(path)}}
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        err = errors[0]
        loc = tuple(err["loc"])
        if err["type"].startswith("union_tag"):
            loc += ("provider",)
        want_key = err["type"] in ("extra_forbidden", "missing") or not loc
        target = _node_at(node, loc, want_key)
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ManifestError(
            f"{_where(path, target)}: {_dotted(loc, data) or '<top>'}: {_message(err)}{more}",
            hint=_hint(err, data),
        ) from None
    return LoadedManifest(path=path, manifest=manifest, raw=data)


def _default_project(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", path.resolve().parent.name).strip("-.")
    return name or "scalable"


def load_manifest(path: str | os.PathLike[str]) -> LoadedManifest:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ManifestError(
            f"{p}: no such manifest",
            hint="pass -f FILE, set SCALABLE_FILE, or run `scalable init`",
        ) from None
    except OSError as exc:
        raise ManifestError(f"{p}: cannot read: {exc.strerror}") from None
    return parse_manifest(text, p)
