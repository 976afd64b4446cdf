"""The cache store and @cacheable's behaviour: hits, None, exceptions, recompute,
corruption, concurrent writers, LRU eviction, statistics."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
import warnings
from pathlib import Path

import pytest
from scalable import cacheable
from scalable.cache import config
from scalable.cache.store import CacheWarning, LocalStore

CALLS: list[tuple] = []


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCALABLE_CACHE_DIR", str(tmp_path / "cache"))
    for var in (
        "SCALABLE_SEED",
        "SCALABLE_CACHE_REMOTE",
        "SCALABLE_CACHE_SIZE_LIMIT",
        "SCALABLE_CACHE",
    ):
        monkeypatch.delenv(var, raising=False)
    CALLS.clear()
    return tmp_path / "cache"


@cacheable
def add(x, y):
    CALLS.append(("add", x, y))
    return x + y


@cacheable
def nothing(x):
    CALLS.append(("nothing", x))
    return None


@cacheable
def fails(x):
    CALLS.append(("fails", x))
    raise ValueError("boom")


def test_second_call_is_a_hit() -> None:
    assert add(1, 2) == 3
    assert add(1, 2) == 3
    assert add(y=2, x=1) == 3
    assert CALLS == [("add", 1, 2)]
    assert add(2, 1) == 3
    assert len(CALLS) == 2


def test_none_is_cached() -> None:
    assert nothing(1) is None
    assert nothing(1) is None
    assert CALLS == [("nothing", 1)]


def test_exceptions_are_never_cached() -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="boom"):
            fails(1)
    assert CALLS == [("fails", 1), ("fails", 1)]
    assert not list(config.current().local.entries())


BOX = {"v": 1}  # outside state the function reads (not part of its key)


def test_recompute_runs_again_and_overwrites(tmp_path: Path) -> None:
    def value(x):
        CALLS.append(("value", x))
        return BOX["v"]

    BOX["v"] = 1
    plain = cacheable(value)
    again = cacheable(recompute=True)(value)
    assert plain(1) == 1
    BOX["v"] = 2
    assert plain(1) == 1  # a hit
    assert again(1) == 2  # runs and overwrites the entry ...
    assert plain(1) == 2  # ... which plain callers now read
    assert len(CALLS) == 2


def test_cache_off_runs_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALABLE_CACHE", "off")
    add(1, 1)
    add(1, 1)
    assert len(CALLS) == 2


def test_a_corrupted_entry_is_a_miss_and_a_warning() -> None:
    assert add(3, 4) == 7
    (entry,) = config.current().local.entries()
    data = bytearray(entry.path.read_bytes())
    data[-20] ^= 0xFF  # one flipped bit in the payload
    entry.path.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match="corrupt cache entry"):
        assert add(3, 4) == 7
    assert len(CALLS) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert add(3, 4) == 7  # repaired: a clean hit
    assert len(CALLS) == 2


def test_a_truncated_entry_is_a_miss() -> None:
    add(5, 6)
    (entry,) = config.current().local.entries()
    entry.path.write_bytes(entry.path.read_bytes()[:30])
    with pytest.warns(CacheWarning):
        assert add(5, 6) == 11
    assert len(CALLS) == 2


def test_a_write_cut_short_leaves_no_valid_entry(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")

    class Boom:
        def __reduce__(self):
            raise OSError("disk full")

    from scalable.cache.entry import Header

    with pytest.raises(OSError):
        store.put(Header("m.f", "ab" * 32, time.time(), 1.0), Boom())
    assert store.get("m.f", "ab" * 32) is None
    assert not list(store.root.rglob("*.tmp"))


def test_unpicklable_results_are_returned_not_cached() -> None:
    @cacheable
    def lock(x):
        import threading

        CALLS.append(x)
        return threading.Lock()

    with pytest.warns(CacheWarning, match="not cached"):
        lock(1)
    with pytest.warns(CacheWarning):
        lock(1)
    assert CALLS == [1, 1]


def test_return_type_mismatch_is_not_cached() -> None:
    @cacheable(return_type=dict)
    def f(x):
        CALLS.append(x)
        return [x]

    with pytest.warns(CacheWarning, match="return_type"):
        assert f(1) == [1]
    with pytest.warns(CacheWarning):
        f(1)
    assert CALLS == [1, 1]


def _writer(root: str, n: int) -> None:
    from scalable.cache.entry import Header

    store = LocalStore(root)
    for i in range(n):
        store.put(
            Header("m.f", "cd" * 32, time.time(), 0.0),
            {"writer": os.getpid(), "i": i, "pad": "x" * 50_000},
        )


def test_concurrent_writers_of_one_key_leave_a_valid_entry(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "s"), 30)) for _ in range(4)]
    for p in procs:
        p.start()
    reader = LocalStore(tmp_path / "s")
    seen = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn read would warn
        while any(p.is_alive() for p in procs):
            found = reader.get("m.f", "cd" * 32)
            if found is not None:
                assert found[1]["pad"] == "x" * 50_000
                seen += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert reader.get("m.f", "cd" * 32) is not None
    assert not list(reader.root.rglob("*.tmp"))


def test_size_limit_evicts_least_recently_used(tmp_path: Path) -> None:
    from scalable.cache.entry import Header

    store = LocalStore(tmp_path / "s", size_limit=5 * 11_000)
    for i in range(5):
        store.put(Header("m.f", f"{i:064x}", time.time(), 0.0), "x" * 10_000)
        path = store.path("m.f", f"{i:064x}")
        os.utime(path, (1000 + i, 1000 + i))  # entry i last used at t=1000+i
    os.utime(store.path("m.f", f"{0:064x}"), (5000, 5000))  # entry 0 used recently
    store.put(Header("m.f", f"{9:064x}", time.time(), 0.0), "x" * 10_000)
    left = {e.key for e in store.entries()}
    assert f"{0:064x}" in left and f"{9:064x}" in left
    assert f"{1:064x}" not in left  # the least recently used went first
    assert store.total_size() <= 5 * 11_000


def test_stats_count_hits_misses_and_time_saved() -> None:
    @cacheable
    def slow(x):
        time.sleep(0.05)
        return x

    slow(1)
    slow(1)
    slow(1)
    stats = config.current().local.stats()
    s = stats[slow.name]
    assert (s.hits, s.misses) == (2, 1)
    assert s.saved_seconds >= 2 * 0.05


def test_clear_by_function_and_age(tmp_path: Path) -> None:
    add(1, 1)
    nothing(1)
    store = config.current().local
    old = next(e for e in store.entries() if "add" in e.function)
    os.utime(old.path, (1000, 1000))
    assert store.clear(older_than=30 * 86400) == 1
    assert [e.function for e in store.entries()] == [nothing.name]
    assert store.clear(function=nothing.name) == 1
    assert list(store.entries()) == []


def test_cached_functions_pickle_by_reference_and_by_value() -> None:
    assert pickle.loads(pickle.dumps(add)) is add
    import cloudpickle

    def local(x):
        return x * 2

    f = cacheable(local)
    g = cloudpickle.loads(cloudpickle.dumps(f))
    assert g(4) == 8 and g.key(4) == f.key(4)


def _record_and_leave(root: str) -> None:
    LocalStore(root).record("f", hit=True, seconds=1.5)  # buffered: no flush timer yet


def test_counters_are_written_when_a_forked_worker_leaves(tmp_path: Path) -> None:
    """A nanny forks its worker (scalable's default): that process exits through
    os._exit, without atexit; its last counters are still written."""
    root = str(tmp_path / "store")
    child = multiprocessing.get_context("fork").Process(target=_record_and_leave,
                                                        args=(root,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    stats = LocalStore(root).stats()
    assert stats["f"].hits == 1 and stats["f"].saved_seconds == 1.5
