"""Cache keys: each way a careless cache goes wrong, as a test."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from scalable import DirType, FileType, cacheable
from scalable.cache.keys import ArgumentTypeError, UnhashableArgument, function_fingerprint


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALABLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SCALABLE_SEED", raising=False)
    monkeypatch.delenv("SCALABLE_CACHE_REMOTE", raising=False)


@cacheable
def sub(a, b=1):
    return a - b


def test_argument_order_is_part_of_the_key() -> None:
    assert sub.key(5, 3) != sub.key(3, 5)


def test_binding_by_name_or_position_is_one_key() -> None:
    assert sub.key(5, b=3) == sub.key(5, 3) == sub.key(a=5, b=3) == sub.key(b=3, a=5)


def test_defaults_are_applied_before_hashing() -> None:
    assert sub.key(5) == sub.key(5, 1)
    assert sub.key(5) != sub.key(5, 2)


def test_key_is_256_bit_hex() -> None:
    key = sub.key(1, 2)
    assert len(key) == 64 and int(key, 16) >= 0


def test_declared_types_are_coerced_first() -> None:
    @cacheable(x=int, y=float)
    def f(x, y):
        return x, y

    assert f.key(np.int64(42), 1) == f.key(42, 1.0)
    assert f.key(42, np.float32(0.5)) == f.key(42, 0.5)
    # ...and the function sees the coerced value, so a hit returns what it would compute.
    assert type(f(np.int64(7), 1)[0]) is int


def test_undeclared_types_stay_distinct() -> None:
    assert sub.key(np.int64(42), 1) != sub.key(42, 1)
    assert sub.key(1, 1) != sub.key(1.0, 1)
    assert sub.key(True, 1) != sub.key(1, 1)


def test_a_bad_coercion_names_the_argument() -> None:
    @cacheable(x=int)
    def f(x):
        return x

    with pytest.raises(ArgumentTypeError, match="'x' is declared int"):
        f.key(2.5)


def test_declaring_an_unknown_argument_is_an_error() -> None:
    with pytest.raises(TypeError, match="no such argument"):
        cacheable(nope=int)(sub.func)


def test_seed_changes_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = sub.key(1, 2)
    monkeypatch.setenv("SCALABLE_SEED", "7")
    assert sub.key(1, 2) != before


def test_code_changes_change_the_key() -> None:
    def make(body: str) -> object:
        ns: dict = {}
        exec(compile(f"def f(a):\n    return {body}\n", "<m>", "exec"), ns)
        return cacheable(ns["f"])

    assert make("a + 1").key(1) != make("a + 2").key(1)  # type: ignore[attr-defined]


def test_defaults_and_closures_change_the_fingerprint() -> None:
    def outer(k):
        def f(a, b=1):
            return a * k + b

        return f

    assert function_fingerprint(outer(2)) != function_fingerprint(outer(3))

    def g(a, b=1):
        return a + b

    fp = function_fingerprint(g)
    g.__defaults__ = (2,)
    assert function_fingerprint(g) != fp


SCALE = 2


def scaled(a):
    return a * SCALE


def test_module_constants_read_by_the_function_change_it(monkeypatch) -> None:
    fp = function_fingerprint(scaled)
    monkeypatch.setitem(globals(), "SCALE", 3)
    assert function_fingerprint(scaled) != fp


def test_containers_numpy_and_dict_order() -> None:
    assert sub.key({"a": 1, "b": 2}, 0) == sub.key({"b": 2, "a": 1}, 0)
    assert sub.key([1, 2], 0) != sub.key((1, 2), 0)
    assert sub.key(np.arange(4), 0) != sub.key(np.arange(4).astype(float), 0)
    assert sub.key(np.arange(4), 0) != sub.key(np.arange(4).reshape(2, 2), 0)
    assert sub.key(np.arange(4), 0) == sub.key(np.arange(4), 0)
    assert sub.key({1, 2, 3}, 0) == sub.key({3, 2, 1}, 0)


@pytest.mark.parametrize(
    ("value", "what"),
    [
        (io.StringIO("x"), "open file"),
        (threading.Lock(), "lock"),
        ((i for i in range(3)), "generator"),
        (iter([1, 2]), "iterator"),
    ],
)
def test_unhashable_arguments_are_a_clear_error(value: object, what: str) -> None:
    with pytest.raises(UnhashableArgument, match=f"argument 'b'.*{what}"):
        sub(1, value)


def test_an_open_file_inside_a_list_names_its_place(tmp_path: Path) -> None:
    with (
        open(tmp_path / "f", "w") as fh,
        pytest.raises(UnhashableArgument, match=r"argument 'a'\[1\]"),
    ):
        sub.key([1, fh])


def test_file_type_hashes_content_not_path(tmp_path: Path) -> None:
    @cacheable(config=FileType)
    def read(config):
        return Path(config).read_text()

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("same")
    b.write_text("same")
    assert read.key(str(a)) == read.key(str(b))
    b.write_text("different")
    assert read.key(str(a)) != read.key(str(b))
    with pytest.raises(FileNotFoundError, match="'config'"):
        read.key(str(tmp_path / "missing"))


def test_dir_type_hashes_relative_paths_and_content(tmp_path: Path) -> None:
    @cacheable(data=DirType)
    def f(data):
        return 1

    for d in ("x", "y"):
        (tmp_path / d / "sub").mkdir(parents=True)
        (tmp_path / d / "sub" / "f.csv").write_text("1,2")
    assert f.key(str(tmp_path / "x")) == f.key(str(tmp_path / "y"))
    (tmp_path / "y" / "sub" / "f.csv").rename(tmp_path / "y" / "sub" / "g.csv")
    assert f.key(str(tmp_path / "x")) != f.key(str(tmp_path / "y"))
    (tmp_path / "y" / "sub" / "g.csv").rename(tmp_path / "y" / "sub" / "f.csv")
    assert f.key(str(tmp_path / "x")) == f.key(str(tmp_path / "y"))
    (tmp_path / "y" / "extra").write_text("")
    assert f.key(str(tmp_path / "x")) != f.key(str(tmp_path / "y"))
