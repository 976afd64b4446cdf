"""The cache key of one call, and why two calls share one only when their results must.

A key is BLAKE2b-256 (hex) over, in order and each length-prefixed and type-tagged:

1. the key format version (``KEY_VERSION``), bumped when this recipe changes;
2. ``SCALABLE_SEED`` (empty when unset): a new seed changes every key;
3. the function's identity (module + qualified name) and its *code*: source text when
   available (else bytecode), constants, names, default values, closure values and the
   simple module-level constants it reads (``SCALE = 2``) — a changed body, default or
   closure constant is a new key (joblib's practice, plus bytecode and globals);
4. the arguments *as bound by the signature*, in signature order, defaults applied:
   ``f(5, 3)`` ≠ ``f(3, 5)`` and ``f(5, b=3)`` = ``f(5, 3)`` = ``f(a=5, b=3)``;
   declared types are coerced first (``numpy.int64(42)`` → ``42`` when ``int`` is
   declared); ``FileType``/``DirType`` arguments contribute their content.

Values are hashed structurally (containers recursively, numpy arrays by dtype, shape
and bytes), falling back to pickle for other objects. Objects whose state is not their
value — open files, locks, generators, sockets — are refused with
``UnhashableArgument`` naming the argument, never silently missed.
"""

from __future__ import annotations

import contextlib
import dis
import hashlib
import inspect
import io
import math
import os
import pickle
import struct
import sys
import threading
import types
from collections.abc import Callable, Mapping
from typing import Any

from scalable.cache.types import DirType, FileType

KEY_VERSION = b"scalable-cache-key/1"
CHUNK = 1 << 20  # bytes read at a time when hashing files


class UnhashableArgument(TypeError):
    """An argument's value cannot be part of a cache key (a file handle, a lock...)."""


class ArgumentTypeError(TypeError):
    """An argument cannot be coerced to its declared type."""


def _new() -> Any:
    return hashlib.blake2b(digest_size=32)


# -- values ----------------------------------------------------------------------------

_LOCK_TYPES: tuple[type, ...] = (
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Condition,
    threading.Semaphore,
    threading.Event,
    threading.Thread,
)
_STATEFUL = (
    (io.IOBase, "an open file or stream"),
    (_LOCK_TYPES, "a lock or other threading object"),
    (
        (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType),
        "a generator or coroutine (consumed as it is read)",
    ),
)


def _stateful_kind(value: Any) -> str | None:
    for kinds, text in _STATEFUL:
        if isinstance(value, kinds):
            return text
    mod = type(value).__module__
    if mod == "socket" or mod.startswith(("multiprocessing.", "sqlite3", "_io")):
        return "a handle to an outside resource"
    # Iterators (map, zip, iter(list)...) are consumed by hashing them.
    if hasattr(value, "__next__") and iter(value) is value:
        return "an iterator (consumed as it is read)"
    return None


class _Hasher:
    """Feeds a structural, type-tagged encoding of values into one hash."""

    def __init__(self) -> None:
        self.h = _new()
        self._seen: set[int] = set()  # containers on the current path (cycles)

    def raw(self, tag: bytes, data: bytes) -> None:
        self.h.update(tag + struct.pack("<Q", len(data)) + data)

    def value(self, v: Any, where: str) -> None:  # noqa: C901 - one switch on type
        t = type(v)
        if v is None:
            self.raw(b"N", b"")
        elif t is bool:
            self.raw(b"B", b"1" if v else b"0")
        elif t is int:
            self.raw(b"I", str(v).encode())
        elif t is float:
            # repr round-trips exactly; -0.0 and 0.0 differ, as their results may.
            self.raw(b"F", repr(v).encode())
        elif t is str:
            self.raw(b"S", v.encode("utf-8", "surrogatepass"))
        elif t in (bytes, bytearray, memoryview):
            self.raw(b"Y", bytes(v))
        elif t is complex:
            self.raw(b"C", repr(v).encode())
        elif t in (tuple, list):
            self._container(b"T" if t is tuple else b"L", v, where)
        elif t is dict:
            self._mapping(v, where)
        elif t in (set, frozenset):
            self._unordered(b"E" if t is set else b"Z", v, where)
        elif _is_numpy(v):
            self._numpy(v, where)
        elif isinstance(v, os.PathLike) and not isinstance(v, type):
            self.raw(b"P" + t.__name__.encode(), os.fspath(v).encode("utf-8", "surrogatepass"))
        elif isinstance(v, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
            self.raw(b"f", function_fingerprint(v).encode())
        elif isinstance(v, type):
            self.raw(b"t", f"{v.__module__}.{v.__qualname__}".encode())
        else:
            self._object(v, where)

    def _container(self, tag: bytes, v: Any, where: str) -> None:
        self._enter(v, where)
        self.raw(tag, str(len(v)).encode())
        for i, item in enumerate(v):
            self.value(item, f"{where}[{i}]")
        self._seen.discard(id(v))

    def _mapping(self, v: Mapping[Any, Any], where: str) -> None:
        # Equal dicts share a key whatever their insertion order (as joblib does).
        self._enter(v, where)
        items = sorted(
            ((_digest_of(k, where), k, val) for k, val in v.items()), key=lambda item: item[0]
        )
        self.raw(b"D", str(len(v)).encode())
        for kd, k, val in items:
            self.h.update(kd)
            self.value(val, f"{where}[{k!r}]")
        self._seen.discard(id(v))

    def _unordered(self, tag: bytes, v: Any, where: str) -> None:
        self._enter(v, where)
        self.raw(tag, str(len(v)).encode())
        for d in sorted(_digest_of(x, where) for x in v):
            self.h.update(d)
        self._seen.discard(id(v))

    def _enter(self, v: Any, where: str) -> None:
        if id(v) in self._seen:
            raise UnhashableArgument(f"{where} contains itself (a cycle)")
        self._seen.add(id(v))

    def _numpy(self, v: Any, where: str) -> None:
        import numpy as np

        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                self.raw(b"Ao", repr((v.shape, str(v.dtype))).encode())
                for i, item in enumerate(v.ravel(order="C").tolist()):
                    self.value(item, f"{where}.flat[{i}]")
                return
            self.raw(b"A", repr((v.shape, v.dtype.str)).encode())
            self.raw(b"a", np.ascontiguousarray(v).view(np.uint8).tobytes())
        else:  # a numpy scalar: its dtype is part of its value
            self.raw(b"G", repr(v.dtype.str).encode() + np.asarray(v).tobytes())

    def _object(self, v: Any, where: str) -> None:
        kind = _stateful_kind(v)
        if kind is not None:
            raise UnhashableArgument(
                f"{where} is {kind} ({type(v).__module__}.{type(v).__qualname__}), "
                "which cannot be part of a cache key"
            )
        try:
            data = pickle.dumps(v, protocol=5)
        except Exception as exc:
            raise UnhashableArgument(
                f"{where} ({type(v).__module__}.{type(v).__qualname__}) cannot be "
                f"serialised for a cache key: {exc}"
            ) from None
        self.raw(b"O" + f"{type(v).__module__}.{type(v).__qualname__}".encode(), data)


def _is_numpy(v: Any) -> bool:
    return (
        type(v).__module__ == "numpy"
        and "numpy" in sys.modules
        and (hasattr(v, "dtype") and hasattr(v, "tobytes"))
    )


def _digest_of(v: Any, where: str) -> bytes:
    h = _Hasher()
    h.value(v, where)
    return bytes(h.h.digest())


def hash_value(v: Any, where: str = "value") -> str:
    """The hex digest of one value (as it would enter a key)."""
    return _digest_of(v, where).hex()


# -- paths -----------------------------------------------------------------------------

# Content digests memoised per process, keyed by what changes when a file changes.
_FILE_MEMO: dict[tuple[Any, ...], bytes] = {}


def _file_digest(path: str) -> bytes:
    st = os.stat(path)
    memo = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    hit = _FILE_MEMO.get(memo)
    if hit is not None:
        return hit
    h = _new()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    digest = bytes(h.digest())
    if len(_FILE_MEMO) > 10_000:
        _FILE_MEMO.clear()
    _FILE_MEMO[memo] = digest
    return digest


def file_digest(path: str | os.PathLike[str], name: str = "path") -> bytes:
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"argument {name!r} (FileType): no such file: {p}")
    return _file_digest(p)


def dir_digest(path: str | os.PathLike[str], name: str = "path") -> bytes:
    """Sorted relative paths and file contents: the same tree anywhere, the same digest."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"argument {name!r} (DirType): no such directory: {root}")
    h = _new()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        h.update(b"d" + rel_dir.encode("utf-8", "surrogatepass") + b"\0")
        for fn in sorted(filenames):
            full = os.path.join(dirpath, fn)
            rel = f"{rel_dir}/{fn}" if rel_dir != "." else fn
            h.update(b"f" + rel.encode("utf-8", "surrogatepass") + b"\0")
            h.update(_file_digest(full) if os.path.isfile(full) else b"(not a file)")
    return bytes(h.digest())


# -- code ------------------------------------------------------------------------------

_SIMPLE = (int, float, str, bytes, bool, complex, type(None))


def _code_digest(code: types.CodeType, h: Any, depth: int = 0) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_varnames).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            if depth < 20:
                _code_digest(const, h, depth + 1)
        else:
            h.update(repr(const).encode())


_ACTIVE = threading.local()


def function_fingerprint(func: Callable[..., Any]) -> str:
    """Identity and code of ``func``: module + qualified name, source (or bytecode),
    defaults, closure values and the simple module-level constants it reads."""
    func = inspect.unwrap(func)
    active: set[int] = _ACTIVE.__dict__.setdefault("ids", set())
    if id(func) in active:  # a recursive closure: its code is already being hashed
        return f"{getattr(func, '__qualname__', '?')}@(recursive)"
    active.add(id(func))
    try:
        return _fingerprint(func)
    finally:
        active.discard(id(func))


def _fingerprint(func: Any) -> str:
    if isinstance(func, types.MethodType):
        func = func.__func__
    h = _new()
    ident = f"{getattr(func, '__module__', None)}:{getattr(func, '__qualname__', repr(func))}"
    h.update(ident.encode())
    code = getattr(func, "__code__", None)
    if code is None:  # a builtin or C function: its identity is all there is
        return f"{ident}@{h.hexdigest()[:16]}"
    with contextlib.suppress(OSError, TypeError):
        h.update(inspect.getsource(func).encode())
    _code_digest(code, h)
    hv = _Hasher()
    hv.h = h
    hv.value(func.__defaults__, "a default value")
    hv.value(func.__kwdefaults__, "a default value")
    for cell in func.__closure__ or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        hv.value(
            contents
            if not callable(contents) or isinstance(contents, type)
            else function_fingerprint(contents),
            "a closure value",
        )
    glb = getattr(func, "__globals__", {})
    for name in sorted(_global_names(code)):
        if name in glb and isinstance(glb[name], _SIMPLE):
            hv.raw(b"g", name.encode())
            hv.value(glb[name], f"global {name}")
    return f"{ident}@{h.hexdigest()}"


def _global_names(code: types.CodeType) -> set[str]:
    names = set()
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(ins.argval, str):
            names.add(ins.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


# -- binding and coercion --------------------------------------------------------------


def coerce(value: Any, declared: Any, name: str) -> Any:
    """``value`` as the declared type, so equal values share a key and the function
    sees what the key describes (``numpy.int64(42)`` → ``42``)."""
    if declared in (FileType, DirType) or declared is Any or declared is None:
        return value
    if not isinstance(declared, type):
        return value  # typing constructs (list[int], unions): hashed as given
    if type(value) is declared:
        return value
    try:
        if declared is int:
            import operator

            if isinstance(value, float) and not value.is_integer():
                raise ValueError("not a whole number")
            return int(value) if isinstance(value, float) else operator.index(value)
        if declared is float:
            out = float(value)
            if math.isnan(out) and not (isinstance(value, float) or _is_numpy(value)):
                raise ValueError("NaN")
            return out
        if declared is bool:
            if type(value).__name__ in ("bool", "bool_"):
                return bool(value)
            raise ValueError("not a boolean")
        if declared is str:
            if isinstance(value, str):
                return str(value)
            raise ValueError("not a string")
        if isinstance(value, declared):
            return value
        return declared(value)
    except (TypeError, ValueError) as exc:
        raise ArgumentTypeError(
            f"argument {name!r} is declared {declared.__qualname__} but got "
            f"{type(value).__qualname__} {value!r:.60}: {exc}"
        ) from None


def bind(
    signature: inspect.Signature,
    declared: Mapping[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> inspect.BoundArguments:
    """Bind a call as the function would see it: defaults applied, declared types coerced."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    for name, typ in declared.items():
        if name in bound.arguments:
            bound.arguments[name] = coerce(bound.arguments[name], typ, name)
    return bound


def call_key(
    fingerprint: str,
    bound: inspect.BoundArguments,
    declared: Mapping[str, Any],
    seed: str,
) -> str:
    """The key of one bound call (hex BLAKE2b-256)."""
    h = _Hasher()
    h.raw(b"V", KEY_VERSION)
    h.raw(b"s", seed.encode())
    h.raw(b"c", fingerprint.encode())
    for name, value in bound.arguments.items():
        h.raw(b"n", name.encode())
        typ = declared.get(name)
        where = f"argument {name!r}"
        if typ is FileType:
            h.raw(b"FT", file_digest(value, name))
        elif typ is DirType:
            h.raw(b"DT", dir_digest(value, name))
        else:
            h.value(value, where)
    return str(h.h.hexdigest())
