"""Run a Python module as ``python -m`` would, then leave without the interpreter's teardown.

``python -m scalable.providers.quick_exit distributed.cli.dask_worker ARGS…`` runs
``dask worker ARGS…``. When a Dask CLI returns, its servers are closed, its work
directory released and its logs written; what is left is CPython's finalization of the
~1,000 modules distributed imported: 0.15–0.2 s of CPU per process, paid by every worker
and the scheduler at once when a local target is destroyed on a 2-core machine (4 workers
and a scheduler took 0.65–1 s to exit after SIGTERM; with this, about 0.1 s). Standard
streams and logging handlers are flushed first; atexit handlers are skipped (distributed
registers none that matter to a closed server; scalable's own use multiprocessing's
finalizers, which a nanny-forked worker runs anyway).

Only for processes started with scalable's own interpreter (local workers and schedulers
on this machine): an image or a batch node's Python may not have scalable installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import runpy
import sys
import traceback


def _exit_code(code: object) -> int:
    """What the interpreter would exit with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def main() -> None:
    if len(sys.argv) < 2:
        print("usage: python -m scalable.providers.quick_exit MODULE [ARG…]", file=sys.stderr)
        os._exit(2)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # noqa: BLE001 - reported as the interpreter would, then exit 1
        traceback.print_exc()
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
