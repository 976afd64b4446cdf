"""Cache-aware planning: objectives size capacity for the calls that will run."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from scalable import ScalableSession, cacheable
from scalable.cache.planning import count_cached

MANIFEST = """
    project: {name: cacheplan}
    targets:
      local:
        provider: local
        adaptive: {minimum: 0, maximum: 200}
        threads_per_worker: 1
        processes: false
        objectives: {deadline_hours: 0.5}
        workload: {task_seconds: 60}
    """


@cacheable
def square(i):
    return i * i


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCALABLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SCALABLE_CACHE_REMOTE", raising=False)
    monkeypatch.delenv("SCALABLE_SEED", raising=False)
    (tmp_path / "scalable.yaml").write_text(textwrap.dedent(MANIFEST).lstrip())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_count_cached_accepts_calls_and_tuples(root: Path) -> None:
    for i in range(3):
        square(i)
    count = count_cached([square.call(0), (square, (1,)), (square, (), {"i": 7})])
    assert (count.total, count.cached, count.misses) == (3, 2, 1)
    with pytest.raises(TypeError, match="calls="):
        count_cached([lambda: 1])


def test_plan_sizes_for_the_misses_only(root: Path) -> None:
    for i in range(600):
        square(i)
    session = ScalableSession.from_yaml(root / "scalable.yaml")
    calls = [square.call(i) for i in range(1000)]
    plan = session.plan(calls=calls)
    assert "cached: 600 of 1,000 calls; sizing for 400" in plan.cost.notes
    assert session.objective.estimate.tasks == 400
    assert "cached: 600 of 1,000 calls; sizing for 400" in session.objective.table()
    # 400 one-minute tasks within 30 minutes (start-up included) need > 13 workers,
    # where sizing for all 1,000 would have needed > 33.
    workers = session.objective.chosen.workers
    assert 14 <= workers < 34

    for i in range(1000):
        square(i)
    plan = session.plan(calls=calls)
    assert "cached: 1,000 of 1,000 calls; nothing to compute" in plan.cost.notes
