"""The full-size crash harness: `python -m tests.reliability --clients 16 --duration 60
--kills 10 [--database-url URL] [--seed S]` (`make reliability` runs it on both databases).

Without --database-url (or with a sqlite:/// one) it runs on a fresh SQLite file; with a
postgresql+psycopg:// server URL it creates a database of its own there and drops it
afterwards. The figures are written to tests/reliability/results.json under the
database's name; the exit status is 1 when anything was lost, duplicated or broken.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from portal.db import make_engine
from tests.conftest import _postgres_database, test_settings
from tests.reliability import harness

RESULTS = Path(__file__).with_name("results.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    parser.add_argument("--seed", type=int, default=None, help="replay a run's kill moments")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gongping-reliability-") as tmp:
        if args.database_url.startswith("postgresql"):
            databases = _postgres_database(args.database_url, suffix="_reliability")
            url = next(databases)
        else:
            databases, url = None, args.database_url or f"sqlite:///{tmp}/portal.db"
        try:
            settings = test_settings(url, Path(tmp))
            owner = make_engine(settings.database_url)
            try:
                report = harness.run(
                    settings,
                    owner,
                    clients=args.clients,
                    duration=args.duration,
                    kills=args.kills,
                    seed=args.seed,
                )
            finally:
                owner.dispose()
        finally:
            if databases is not None:
                databases.close()  # drops the database

    problems = report.problems()
    figures = report.figures() | {
        "run_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "passed": not problems,
    }
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    results[report.database] = figures
    args.results.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(
        f"{report.database}: {report.clients} clients x {report.duration_s:g} s, "
        f"{report.kills_survived}/{report.kills} kills survived, {report.acknowledged} "
        f"acknowledged, {report.lost} lost, {report.duplicated} duplicated "
        f"(seed {report.seed}; figures in {args.results})"
    )
    for p in problems:
        print(f"PROBLEM {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
