"""Reading a manifest: YAML with positions, ``${VAR}`` expansion, errors that point.

Every error names the file, line, column and key, with a hint, e.g.::

    scalable.yaml:5:5: targets.local.max_wokers: unknown key (did you mean 'max_workers'?)
"""

from __future__ import annotations

import contextlib
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
from scalable.errors import ManifestError, ScalableError
from scalable.manifest.schema import (
    Manifest,
    manifest_model,
    target_model,
    without_pydantic_plugins,
)
from scalable.registry import provider_names

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"


# Bounds on what a manifest may expand to. YAML aliases let a few hundred bytes stand for
# billions of nodes ("billion laughs"), an alias inside its own anchor makes a cycle, and
# deep nesting exhausts Python's stack; a real manifest is a few hundred nodes deep 6.
MAX_BYTES = 256 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000  # after aliases are expanded


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers: ``04:00:00`` stays a string.

    Composition is bounded: nesting depth, and the size of the document with every alias
    expanded (counted, not built: aliases stay shared nodes), so an alias bomb or a cycle
    is refused at once instead of taking minutes or the stack.
    """

    def __init__(self, stream: str, path: Path = Path("scalable.yaml")) -> None:
        super().__init__(stream)
        self._path = path
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) → expanded size, once complete

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's
        # Refused while scanning: the scanner's simple-key bookkeeping is quadratic in the
        # flow depth, so 5,000 ``[`` would take seconds before the composer saw any.
        if self.flow_level >= MAX_DEPTH:
            raise self._refuse(self.get_mark(), f"nested deeper than {MAX_DEPTH} levels")
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise self._refuse(
                    event.start_mark,
                    f"alias *{event.anchor} is inside the collection it names (a cycle)",
                )
            return typing.cast(yaml.Node, super().compose_node(parent, index))
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self._refuse(
                self.peek_event().start_mark, f"nested deeper than {MAX_DEPTH} levels"
            )
        try:
            node = typing.cast(yaml.Node, super().compose_node(parent, index))
        finally:
            self._depth -= 1
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._sizes[id(n)] for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        if size > MAX_NODES:
            raise self._refuse(
                node.start_mark,
                f"expands to more than {MAX_NODES:,} values (each use of an alias counts)",
            )
        self._sizes[id(node)] = size
        return node

    def _refuse(self, mark: yaml.Mark, problem: str) -> ManifestError:
        return ManifestError(
            f"{self._path.name}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {problem}",
            hint="a manifest is a small document: write the values out, or use fewer aliases",
        )


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
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

# ``$$`` is a literal ``$`` (Compose's escape), so ``$${SLURM_JOB_ID}`` reaches a job
# script as ``${SLURM_JOB_ID}``; ``${VAR}`` and ``${VAR:-default}`` read the environment.
_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


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


def _expand(
    path: Path, node: yaml.Node, loader: _Loader, keypath: str, done: set[int] | None = None
) -> None:
    """Expand ``${VAR}`` / ``${VAR:-default}`` / ``$$`` in scalars (keys and values);
    reject duplicate keys.

    Each node is visited once: an alias shares its anchor's node, and expanding it twice
    would undo the ``$$`` escape.
    """
    done = set() if done is None else done
    if id(node) in done:
        return
    done.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, yaml.Node] = {}
        for knode, vnode in node.value:
            if isinstance(knode, yaml.ScalarNode) and "$" in knode.value:
                # Keys too: a container bind's host path is a key (``${DATA}/in: /in``).
                _expand(path, knode, loader, keypath, done)
            key = knode.value if isinstance(knode, yaml.ScalarNode) else f"<{knode.id}>"
            if isinstance(knode, yaml.ScalarNode) and key in seen:
                raise ManifestError(
                    f"{_where(path, knode)}: {keypath + '.' if keypath else ''}{key}: "
                    f"duplicate key (first at line {seen[key].start_mark.line + 1})",
                    hint="remove one of them",
                )
            seen[key] = knode
            _expand(path, vnode, loader, f"{keypath}.{key}" if keypath else str(key), done)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _expand(path, item, loader, f"{keypath}[{i}]", done)
    elif isinstance(node, yaml.ScalarNode) and "$" in node.value:

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ManifestError(
                f"{_where(path, node)}: {keypath}: environment variable {name} is not set",
                hint=f"export {name}=… or write ${{{name}:-default}} (and $$ for a literal $)",
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
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node, key_node = node.value[part], None
    return (key_node or node) if want_key else node


def _fields_at(data: Any, loc: tuple[int | str, ...], root: type[BaseModel]) -> list[str]:
    """The keys allowed beside the last part of ``loc`` (for 'did you mean')."""
    model: Any = root
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
            if isinstance(value, dict) and isinstance(value.get("provider"), str):
                with contextlib.suppress(ScalableError):
                    model = target_model(value["provider"])
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


def _hint(err: Any, data: Any, root: type[BaseModel]) -> str | None:
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden" and loc:
        allowed = _fields_at(data, loc, root)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        if close:
            return f"did you mean {close[0]!r}?"
        if allowed:
            return "allowed keys here: " + ", ".join(allowed)
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return "provider must be one of: " + ", ".join(provider_names())
    if kind == "missing":
        return f"add '{loc[-1]}:'"
    if "container" in loc:
        return "see docs/guides/worker-groups.rst (containers and binds)"
    return "see `scalable schema` or docs/reference/manifest.rst"


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


def _dotted(loc: tuple[int | str, ...], data: Any, tags: set[str]) -> str:
    """``targets.local.max_workers``: the key path as written in the file."""
    out = ""
    value = data
    for part in loc:
        in_dict = isinstance(value, dict) and part in value
        in_list = isinstance(value, list) and isinstance(part, int) and part < len(value)
        if in_dict or in_list:
            value = value[part]
        elif isinstance(part, str) and part in tags:
            continue  # a discriminator tag, not a key of the file
        elif part == "[key]":
            continue  # pydantic's marker for "the key itself": the key is already shown
        else:
            value = None
        if isinstance(part, str) and not re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f"[{part!r}]"  # a key with spaces, '=' or a newline stays on one line
        else:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _build_blocks(value: Any, done: set[type] | None = None) -> None:
    """Complete the (deferred) model class of every block inside ``value``."""
    done = set() if done is None else done
    if isinstance(value, BaseModel):
        cls = type(value)
        if cls not in done:
            done.add(cls)
            if not cls.__pydantic_complete__:
                cls.model_rebuild(force=True)
        for name in cls.model_fields:
            _build_blocks(getattr(value, name), done)
    elif isinstance(value, dict):
        for v in value.values():
            _build_blocks(v, done)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _build_blocks(v, done)


def parse_manifest(text: str, path: Path) -> LoadedManifest:
    if len(text) > MAX_BYTES:
        raise ManifestError(
            f"{path.name}: the manifest is larger than {MAX_BYTES // 1024} KiB",
            hint="a manifest declares targets; keep data elsewhere",
        )
    loader = _Loader(text, path)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ManifestError(f"{path.name}: the file is empty", hint="run `scalable init`")
        _expand(path, node, loader, "")
        try:
            data = loader.construct_document(node)
        except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise what they
            # meet: ValueError (int("9" * 5000), a 2001-13-45 date), IndexError (!!int "")…
            raise ManifestError(
                f"{path.name}: invalid YAML: cannot read a value "
                f"({type(exc).__name__}: {exc})".replace("\n", " "),
                hint="quote the value to keep it a string",
            ) from None
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
    # Top-level ``x-…`` keys are ignored: a place for YAML anchors (Compose's extension
    # fields), e.g. ``x-common: &common {threads_per_worker: 2}``.
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    if "project" not in data:
        data = {**data, "project": {"name": _default_project(path)}}
    providers = _providers(path, node, data)
    model = manifest_model(providers)
    try:
        # Validating builds the blocks made by default (``Project()``, …) on first use,
        # and the blocks this manifest holds are dumped later (digests, plans): build
        # them all now, in one go without pydantic's plugin scan (see schema.py).
        with without_pydantic_plugins():
            manifest = model.model_validate(data)
            _build_blocks(manifest)
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
            f"{_where(path, target)}: {_dotted(loc, data, set(providers)) or '<top>'}: "
            f"{_message(err)}{more}",
            hint=_hint(err, data, model),
        ) from None
    return LoadedManifest(path=path, manifest=manifest, raw=data)


def _providers(path: Path, node: yaml.Node, data: dict[str, Any]) -> tuple[str, ...]:
    """The providers the targets name, each loaded (its schema is built only now).

    A name no provider is registered under, or a plug-in that cannot be imported, is an
    error at that target's ``provider:`` key.
    """
    targets = data.get("targets")
    names: set[str] = set()
    if not isinstance(targets, dict):
        return ()
    for tname, body in targets.items():
        name = body.get("provider") if isinstance(body, dict) else None
        if not isinstance(name, str) or name in names:
            continue  # missing or mistyped: the schema's own error says so
        try:
            target_model(name)
        except ScalableError as exc:
            where = _where(path, _node_at(node, ("targets", tname, "provider"), False))
            raise ManifestError(
                f"{where}: targets.{tname}.provider: {exc.message}", hint=exc.hint
            ) from None
        names.add(name)
    return tuple(sorted(names))


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
