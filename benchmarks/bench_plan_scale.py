"""`plan` over a state holding N resources (1k, 5k, 10k): aim under 1 s at 10k, linear.

The records point at this very process (alive), so the refresh path runs for real and
the plan is "No changes".
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from scalable.planning.diff import make_plan
from scalable.planning.render import render_plan
from scalable.providers.processes import start_time
from scalable.state import LocalStore, ResourceRecord, StateFile
from scalable.workspace import Workspace


def bench(n: int) -> tuple[float, float]:
    root = Path(tempfile.mkdtemp(prefix="scalable-plan-"))
    (root / "scalable.yaml").write_text(
        f"targets:\n  local: {{provider: local, max_workers: {n - 1}, processes: true}}\n"
    )
    ws = Workspace.open(root / "scalable.yaml")
    me = {"pid": os.getpid(), "start_time": start_time(os.getpid())}
    st = StateFile(target="local", provider="local")
    for spec in ws.provider.desired():
        st.resources.append(ResourceRecord(
            address=spec.address, type=spec.type, status="ready", idempotency_key="k",
            id=f"pid:{os.getpid()}", group=spec.group, attributes=spec.attributes,
            meta=me, worker_names=list(spec.worker_names)))
    LocalStore(ws.spec.workdir).write(st)
    t0 = time.perf_counter()
    ws = Workspace.open(root / "scalable.yaml")
    plan = make_plan(ws.provider, ws.store.read(), ws.spec.manifest_digest)
    text = render_plan(plan)
    total = time.perf_counter() - t0
    assert "No changes." in text, text[:500]
    t0 = time.perf_counter()
    make_plan(ws.provider, ws.store.read(), ws.spec.manifest_digest, refresh=False)
    return total, time.perf_counter() - t0


def main() -> None:
    sizes = [int(x) for x in sys.argv[1:]] or [1000, 5000, 10000]
    rows = []
    for n in sizes:
        total, norefresh = bench(n)
        rows.append((n, total))
        print(f"{n:6d} resources: plan {total * 1000:7.1f} ms (refresh), "
              f"{norefresh * 1000:7.1f} ms (--no-refresh); {total / n * 1e6:6.1f} µs/resource")
    print("aim: under 1000 ms at 10,000 and linear (µs/resource roughly constant)")


if __name__ == "__main__":
    main()
