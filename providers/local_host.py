"""One process hosting several threads-only Dask workers (local ``processes: false``).

Takes the same flags as ``dask worker`` that scalable passes; workers are named like
dask-worker names them (``NAME-0 … NAME-N-1``). SIGTERM closes them gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import signal


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scalable-local-host")
    p.add_argument("scheduler")
    p.add_argument("--name", required=True)
    p.add_argument("--nthreads", type=int, default=1)
    p.add_argument("--nworkers", type=int, default=1)
    p.add_argument("--memory-limit", default="auto")
    p.add_argument("--resources", default="")
    p.add_argument("--death-timeout", default="60s")
    p.add_argument("--local-directory", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--dashboard", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--dashboard-address", default=None)
    p.add_argument("--tls-ca-file", default=None)
    p.add_argument("--tls-cert", default=None)
    p.add_argument("--tls-key", default=None)
    args, _unknown = p.parse_known_args(argv)
    return args


async def _run(args: argparse.Namespace) -> None:
    from dask.utils import parse_timedelta
    from distributed import Worker
    from distributed.security import Security

    security = None
    if args.tls_ca_file:
        security = Security(tls_ca_file=args.tls_ca_file, tls_worker_cert=args.tls_cert,
                            tls_worker_key=args.tls_key, require_encryption=True)

    resources = {}
    for item in args.resources.split():
        k, _, v = item.partition("=")
        resources[k] = float(v)
    limit = args.memory_limit
    memory: int | str = int(limit) if limit.isdigit() else limit
    n = args.nworkers
    names = [args.name] if n == 1 else [f"{args.name}-{k}" for k in range(n)]
    workers = [
        Worker(
            args.scheduler,
            name=name,
            nthreads=args.nthreads,
            memory_limit=memory,
            resources=resources or None,
            death_timeout=parse_timedelta(args.death_timeout),
            local_directory=args.local_directory,
            security=security,
            host=args.host,
            # The HTTP server (health, metrics, dashboard if asked) binds --host too.
            dashboard=args.dashboard,
            dashboard_address=args.dashboard_address or f"{args.host}:0",
        )
        for name in names
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.gather(*workers)
    finished = asyncio.ensure_future(asyncio.gather(*(w.finished() for w in workers)))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([finished, stopping], return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*(w.close(reason="scalable: SIGTERM") for w in workers),
                         return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_run(_parse(argv)))


if __name__ == "__main__":
    main()
