"""The console script's code cache (issue 15, cli/codecache.py): what it serves is the code
compile makes, it reads only a file nobody else may write, and it never breaks a run."""

from __future__ import annotations

import dataclasses
import keyword
import marshal
import os
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scalable.cli import codecache
from scalable.cli.codecache import CodeCache


@pytest.fixture(autouse=True)
def builtins_back(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as a shell may set it
    codecache.uninstall()
    yield
    codecache.uninstall()


def _poisoned(path: Path) -> None:
    """A cache file that answers the source ``1`` with the code of ``2``."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    entries = {("1", "<string>", "eval", sys.flags.optimize): compile("2", "<string>", "eval")}
    path.write_bytes(marshal.dumps((codecache._HEADER, entries)))
    os.chmod(path, 0o600)


def test_code_comes_from_a_file_only_its_owner_may_write(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "code.marshal"
    _poisoned(path)
    assert eval(CodeCache(path).code("1", "<string>", "eval")) == 2  # read: it is used
    os.chmod(path, 0o666)
    assert eval(CodeCache(path).code("1", "<string>", "eval")) == 1  # others may write it
    os.chmod(path, 0o600)
    os.chmod(path.parent, 0o777)
    assert eval(CodeCache(path).code("1", "<string>", "eval")) == 1  # or replace it
    os.chmod(path.parent, 0o700)
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    _poisoned(tmp_path / "elsewhere")
    assert eval(CodeCache(path).code("1", "<string>", "eval")) == 1  # a link is not followed


@pytest.mark.parametrize("content", [
    b"not marshal at all",
    marshal.dumps((("scalable-code-cache", 1, 0x30800F0, "cpython-38"), {})),  # another Python
    marshal.dumps([1, 2, 3]),
    b"",
])
def test_an_unreadable_or_foreign_file_is_compiled_afresh_and_rewritten(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "code.marshal"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    cache = CodeCache(path)
    assert cache.known == {}
    assert eval(cache.code("6 * 7", "<string>", "eval")) == 42
    cache.save()
    assert eval(CodeCache(path).known[("6 * 7", "<string>", "eval", sys.flags.optimize)]) == 42


def test_the_file_is_written_private_and_only_when_something_was_compiled(
    tmp_path: Path
) -> None:
    path = tmp_path / "home" / ".cache" / "scalable" / "code.marshal"
    cache = CodeCache(path)
    cache.save()
    assert not path.exists()  # nothing new: nothing written
    cache.code("x + 1", "<string>", "eval")
    cache.save()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    before = path.stat().st_mtime_ns
    again = CodeCache(path)
    again.code("x + 1", "<string>", "eval")
    again.save()
    assert path.stat().st_mtime_ns == before and again.used


def test_pythondontwritebytecode_is_respected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    cache = CodeCache(tmp_path / "code.marshal")
    cache.code("1", "<string>", "eval")
    cache.save()
    assert not (tmp_path / "code.marshal").exists()


def test_a_full_file_keeps_only_what_the_writing_run_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codecache, "MAX_ENTRIES", 3)
    path = tmp_path / "code.marshal"
    first = CodeCache(path)
    for n in range(3):
        first.code(str(n), "<string>", "eval")
    first.save()
    second = CodeCache(path)
    second.code("1", "<string>", "eval")  # used again
    second.code("99", "<string>", "eval")  # new: the file would outgrow the cap
    second.save()
    assert sorted(k[0] for k in CodeCache(path).known) == ["1", "99"]


def test_the_switch_and_the_home_decide_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    monkeypatch.delenv("SCALABLE_CODE_CACHE", raising=False)
    found = codecache.default_path("plan")
    assert found is not None and found.parent == Path("/somewhere/scalable")
    assert found.name.endswith("-plan.marshal") and found != codecache.default_path("status")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    assert codecache.default_path("plan") is None
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    monkeypatch.setenv("SCALABLE_CODE_CACHE", "off")
    assert codecache.default_path("plan") is None


_names = st.lists(
    st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(
        lambda s: not keyword.iskeyword(s) and s != "self"
    ),
    min_size=0, max_size=6, unique=True,
)


@settings(max_examples=40, deadline=None)
@given(names=_names, frozen=st.booleans(), order=st.booleans())
def test_a_dataclass_from_the_cache_has_the_code_compile_gives_it(
    tmp_path_factory: pytest.TempPathFactory, names: list[str], frozen: bool, order: bool
) -> None:
    def made() -> dict[str, typing.Any]:
        cls = dataclasses.make_dataclass(
            "C", [(n, int, dataclasses.field(default=i)) for i, n in enumerate(names)],
            frozen=frozen, order=order,
        )
        return {k: v.__code__ for k, v in vars(cls).items() if hasattr(v, "__code__")}

    codecache.uninstall()
    plain = made()
    path = tmp_path_factory.mktemp("cc") / "code.marshal"
    cold = codecache.install(path=path)
    assert cold is not None
    made()
    cold.save()
    codecache.uninstall()
    warm = codecache.install(path=path)
    assert warm is not None
    served = made()
    codecache.uninstall()
    assert warm.used and not warm.added  # every method came from the file
    assert served == plain  # co_code, consts, names, flags, line table…
    for name, code in served.items():
        assert code.co_filename == plain[name].co_filename, name


def test_forward_refs_and_namedtuples_are_served_too(tmp_path: Path) -> None:
    cache = codecache.install(path=tmp_path / "code.marshal")
    assert cache is not None
    ref = typing.ForwardRef("list[int]")
    point = __import__("collections").namedtuple("Point", "x y")
    keys = {k[0] for k in cache.added}
    assert "list[int]" in keys and any(k.startswith("lambda _cls, x, y") for k in keys)
    assert typing.get_type_hints(type("H", (), {"__annotations__": {"a": ref}}))["a"] == list[int]
    assert point(1, 2).y == 2


def test_a_process_that_calls_main_gets_the_builtins(tmp_path: Path) -> None:
    """Only the console script (``run``) installs the cache: a library user's process
    (tests, ScalableSession's callers) compiles its own code as Python always does."""
    (tmp_path / "scalable.yaml").write_text("targets:\n  local: {provider: local}\n")
    probe = (
        "import dataclasses, typing; from scalable.cli import main; main(['validate']); "
        "print('exec' in vars(dataclasses), 'compile' in vars(typing))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False False"


def test_the_console_script_plans_the_same_from_its_cache(tmp_path: Path) -> None:
    """A real ``scalable plan``, three times: the first fills the cache, the second is
    served from it and writes nothing, the third runs with the cache off; all three
    print the same plan."""
    (tmp_path / "scalable.yaml").write_text(
        "project: {name: markerproject}\n"
        "targets:\n  local: {provider: local, max_workers: 2, env: {TOKEN: markersecret}}\n"
    )
    env = {"PATH": "/usr/bin:/bin", "CI": "1", "NO_COLOR": "1",
           "XDG_CACHE_HOME": str(tmp_path / "xdg")}

    def plan(**extra: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "scalable", "plan"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120,
                              env={**env, **extra})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    first = plan()
    files = list((tmp_path / "xdg" / "scalable").iterdir())
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    assert files[0].name.endswith("-plan.marshal")
    entries = CodeCache(files[0]).known
    # Hundreds of dataclass methods and ForwardRefs: the plan path's generated code.
    assert len(entries) > 200, len(entries)
    assert b"marker" not in files[0].read_bytes()  # code only: no manifest value
    written = files[0].stat().st_mtime_ns
    assert plan() == first
    assert files[0].stat().st_mtime_ns == written  # nothing new to keep
    assert plan(SCALABLE_CODE_CACHE="off") == first
    assert "Plan: 3 to add" in first
