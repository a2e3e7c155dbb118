"""Benchmark: import N generated return visits (new policies) through the CSV path.

    .venv/bin/python bench/visits_import.py [--rows 100000] [--database-url URL]

Uses a fresh SQLite file unless a URL is given; prints the seconds and writes them to
bench/visits_import.json. Every 1,000th row is bad on purpose (reported, not imported).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from portal import directory, visits
from portal.config import load_settings
from portal.db import make_engine, migrate, reading
from portal.stars import china_today

HERE = Path(__file__).resolve().parent


def generate(n: int, seed: int = 7) -> str:
    rng, today = random.Random(seed), china_today()
    lines = ["insurer,kind,policy_no,phone,staff_no,date,customer"]
    for i in range(n):
        prefix = rng.choice(("138", "139", "150", "186", "177"))
        phone = "12345" if i % 1000 == 999 else f"{prefix}{rng.randrange(10**8):08d}"
        day = today - timedelta(days=rng.randrange(0, 30))
        agent = f"AG{rng.randrange(200):04d}"
        lines.append(f"BX,new_policy,BX{i:09d},{phone},{agent},{day.isoformat()},CU{i:08d}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-visits-"))
    base = load_settings(env_file="/nonexistent")
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    settings = dataclasses.replace(base, database_url=url, phone_key_path=tmp / "phone.key")
    migrate(settings)
    engine = make_engine(url)
    with engine.begin() as conn:
        directory.add_insurer(conn, "BX", "基准测试保险")
        directory.add_branch(conn, "BX", "B1", "基准测试中支", "430200")
        rows = [
            directory.StaffRow("BX", "B1", f"AG{i:04d}", f"业务员{i}", "agent") for i in range(200)
        ]
        directory.import_staff(conn, rows)
    data = generate(args.rows)
    # As `portal visits import` does: check on a read connection, then apply under the
    # write lock; "write_lock_seconds" is how long other writers wait.
    started = time.perf_counter()
    with reading(engine) as conn:
        rows, report = visits.check_csv(conn, data, b"k" * 32, china_today())
    checked = time.perf_counter()
    with engine.begin() as conn:
        visits.apply(conn, rows, china_today(), report)
    done = time.perf_counter()
    seconds = round(done - started, 2)
    result = {
        "rows": args.rows,
        "seconds": seconds,
        "write_lock_seconds": round(done - checked, 2),
        "rows_per_second": round(args.rows / seconds),
        "added": report.added,
        "rejected": len(report.errors),
        "database": engine.dialect.name,
    }
    (HERE / "visits_import.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
