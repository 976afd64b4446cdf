"""Issue 18: a budget enforced while the run goes, on the local target with a made-up
price of $1 per resource-second."""

from __future__ import annotations

import json
import time

import pytest
from scalable import BudgetExhausted, ScalableSession

from tests.conftest import Project

pytestmark = pytest.mark.slow

BUDGET = 200.0
INTERVAL = 0.5


def test_spend_stays_within_one_interval_of_the_budget(project: Project) -> None:
    """The guard runs from the end of the first apply (the session's controller): the
    budget leaves room for a slow start-up on a loaded machine (~100 s at $2/s)."""
    project.write(f"""
        project: {{name: budget}}
        targets:
          local:
            provider: local
            pricing: {{hourly_usd: 3600}}
            adaptive: {{minimum: 1, maximum: 2, interval: {INTERVAL}s, cooldown: 60s}}
            workload: {{tasks: 4, task_seconds: 0.5}}
        """)
    path = project.root / "scalable.yaml"
    with ScalableSession.from_yaml(path, objectives={"budget_usd": BUDGET}) as session:
        client = session.start()
        assert session.controller is not None and session.controller.budget is not None
        # Far more work than the plan was for: the budget runs out first.
        futures = client.map(lambda i: time.sleep(1.0) or i, range(400), pure=False)
        with pytest.raises(BudgetExhausted) as info:
            client.gather(futures)
        assert "$200.00" in str(info.value) and "spent" in str(info.value)
        assert info.value.spent_usd <= BUDGET
        # Every worker retired; the scheduler stays to tell clients why.
        deadline = time.monotonic() + 60
        while client.scheduler_info(n_workers=-1)["workers"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.scheduler_info(n_workers=-1)["workers"] == {}
    doc = json.loads(project.run("report", "--json", check=True).stdout)
    assert doc["budget_usd"] == BUDGET
    # Within one controller interval's cost (scheduler + the most workers, $1/s each).
    one_interval = (1 + 2) * 1.0 * INTERVAL
    assert doc["spent_usd"] is not None and doc["spent_usd"] <= BUDGET + one_interval, doc
    kinds = [a["kind"] for a in doc["budget_actions"]]
    assert kinds == ["budget_warning", "budget_exhausted"]
    text = project.run("report", check=True).stdout
    assert "Budget: $200.00; spent" in text and "exhausted:" in text
