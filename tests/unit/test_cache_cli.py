"""``scalable cache`` and ``scalable cache clear``; tags with ``cache: false``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from scalable import cacheable
from scalable.cache import config
from scalable.cli import main
from scalable.client import ScalableClient


@cacheable
def alpha(x):
    return x


@cacheable
def beta(x):
    return [x]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCALABLE_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.delenv("SCALABLE_CACHE_REMOTE", raising=False)
    for i in range(3):
        alpha(i)
    alpha(0)
    beta(1)
    config.current().local.flush_stats()  # as the 2-second timer (or exit) would
    return tmp_path / "c"


def test_cache_shows_entries_and_hit_rate_by_function(cache: Path, capsys) -> None:
    assert main(["cache", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["function"]: r for r in doc["functions"]}
    assert doc["entries"] == 4 and doc["calls"] == 5 and doc["hits"] == 1
    assert rows[alpha.name]["entries"] == 3 and rows[alpha.name]["hit_rate"] == 0.25
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert "4 entries" in out and alpha.name in out and "25%" in out


def test_clear_one_function_by_short_name(cache: Path, capsys) -> None:
    assert main(["cache", "clear", "--function", "beta"]) == 0
    assert "Removed 1 cache entry of" in capsys.readouterr().out
    assert alpha.is_cached(0) and not beta.is_cached(1)


def test_clear_older_than(cache: Path, capsys) -> None:
    path = next(p for p in (cache).rglob("*") if p.is_file() and ".stats" not in p.parts
                and alpha.key(0) == p.name)
    os.utime(path, (1000, 1000))
    assert main(["cache", "clear", "--older-than", "30d"]) == 0
    assert "Removed 1 cache entry unused for 30d" in capsys.readouterr().out
    assert not alpha.is_cached(0) and alpha.is_cached(1)


def test_clear_errors_are_one_line(cache: Path, capsys) -> None:
    assert main(["cache", "clear", "--function", "nope"]) == 1
    err = capsys.readouterr().err
    assert "Error: no cached function 'nope'" in err and "Traceback" not in err
    assert main(["cache", "clear", "--older-than", "soon"]) == 1
    assert "Error: --older-than 'soon'" in capsys.readouterr().err
    assert alpha.is_cached(0)  # nothing removed by a failed command


def test_tags_with_cache_false_submit_the_bare_function() -> None:
    client = SimpleNamespace(_uncached_tags=frozenset({"aggregate"}))
    assert ScalableClient._uncached(client, alpha, "aggregate") is alpha.func  # type: ignore[arg-type]
    assert ScalableClient._uncached(client, alpha, "sim") is alpha  # type: ignore[arg-type]
    assert ScalableClient._uncached(client, len, "aggregate") is len  # type: ignore[arg-type]
