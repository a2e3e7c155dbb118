"""`make run`: serve the portal with a local Meilisearch when its binary is available.

Starts Meilisearch on 127.0.0.1 (data under var/meili), rebuilds its index from the
database, serves the app with uvicorn, and stops Meilisearch by its PID on exit.
Without the binary the portal serves search from the SQL fallback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys

import uvicorn

from portal import search
from portal.config import ROOT, load_settings
from portal.db import make_engine
from portal.search import server
from portal.web.app import create_app

log = logging.getLogger("portal")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portal.devserver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    # A closed terminal (SIGHUP) or a kill (SIGTERM) must still run the `finally` that
    # stops Meilisearch: uvicorn re-raises SIGTERM after its shutdown, which would end
    # the process before it, so turn both into SystemExit first.
    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, lambda *_: sys.exit(0))
    settings = load_settings()
    meili = None
    if not settings.meili_url:
        try:
            directory = ROOT / "var" / "meili"
            meili = server.start(directory, key=server.dev_key(directory))
            settings = dataclasses.replace(
                settings, meili_url=meili.url, meili_key=type(settings.meili_key)(meili.key)
            )
            print(f"Meilisearch: {meili.url} (pid {meili.pid})", file=sys.stderr)
        except (FileNotFoundError, RuntimeError, TimeoutError) as err:
            print(
                f"Meilisearch not started ({err}); using the SQL search fallback", file=sys.stderr
            )
    try:
        engine = make_engine(settings.runtime_database_url)
        index = search.make_index(settings, engine)
        count = search.reindex(engine, index, progress=True)
        engine.dispose()
        print(f"search: {count} reviews indexed in {index.name}", file=sys.stderr)
        print(f"\nGongping portal: http://{args.host}:{args.port}/\n", file=sys.stderr)
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    finally:
        if meili is not None:
            meili.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
