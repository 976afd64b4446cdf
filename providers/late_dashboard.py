"""Scheduler preload: the Bokeh dashboard, attached once the scheduler listens.

``dask scheduler`` imports bokeh and builds the dashboard before it listens: about half
a second of CPU on the path every worker waits on, while on a small machine the workers
are importing distributed on the same cores. scalable starts the scheduler with
``--no-dashboard`` and this preload, which imports the dashboard (in a thread, so the
event loop keeps answering registrations) and attaches it to the scheduler's HTTP
server, the one that already serves ``/health`` on the dashboard port. The dashboard
URL is the same; its pages answer a moment after the scheduler does (``/status`` gives
404 until then).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

# The scheduler's own logger: Dask configures it (INFO, into the scheduler's log).
log = logging.getLogger("distributed.scheduler")


async def _attach(scheduler: Any) -> None:
    try:
        dashboard = await asyncio.to_thread(importlib.import_module,
                                            "distributed.dashboard.scheduler")
    except ImportError as exc:  # bokeh missing: Dask's own --dashboard says the same
        log.warning("dashboard not started: %s", exc)
        return
    dashboard.connect(scheduler.http_application, scheduler.http_server, scheduler,
                      prefix="")
    log.info("dashboard attached to the scheduler's HTTP server")


def dask_setup(scheduler: Any) -> None:
    # Kept on the scheduler: a task the loop only references weakly could be collected.
    scheduler._scalable_dashboard = asyncio.get_running_loop().create_task(
        _attach(scheduler))
