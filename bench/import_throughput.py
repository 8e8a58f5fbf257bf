"""`civicpulse import` throughput and memory: rows per second and peak RSS, streamed.

Generates a call detail record CSV (deploy/mappings/call-detail-records.yaml's
columns; 1 row in 50 refused for an unknown queue, so the report path runs too) and
imports it as operators do, `python -m civicpulse import` in a child process:

1. `--dry-run` on the whole file (every row through intake's own rules), and the same
   rows as an `.xlsx` workbook (openpyxl read-only) if `--xlsx-rows` is above 0;
2. for real, over HTTP into an intake service (`python -m services.intake`) on a fresh
   database, `--real-rows` rows (default: all of them);
3. the same real file again: every record a duplicate, nothing added.

Peak RSS is each child's own `ru_maxrss` (os.wait4), so memory staying flat while
the row count grows is the evidence of streaming: compare `--rows 200000` with
`--rows 1000000`. Prints one JSON summary line on stdout at the end.

    python -m bench.import_throughput --rows 1000000 --real-rows 200000

Uses `CIVICPULSE_KAFKA_BOOTSTRAP` and `CIVICPULSE_DATABASE_URL` if both are set, else
starts a throwaway local stack. The real import's events stay on
`civicpulse.contacts` (ids start `bench-<run id>-`); the scratch database is dropped.
"""

import argparse
import asyncio
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl

from bench.support import infrastructure, print_summary, say
from civicpulse.infra import pick_free_port, scratch_database
from civicpulse.processes import REPO_ROOT, ServiceProcess
from shared.api_keys import hash_api_key

MAPPING = REPO_ROOT / "deploy" / "mappings" / "call-detail-records.yaml"
COLUMNS = ["Call ID", "Start Time", "Queue", "Wait Seconds", "Outcome", "Transfers"]
COLUMNS += ["Answering Team"]
QUEUES = ["Council Tax", "Benefits", "Housing Repairs", "Bins", "Planning", "Switchboard"]
REFUSED_EVERY = 50
API_KEY = "bench-import-key-" + uuid.uuid4().hex


@dataclass
class Run:
    name: str
    rows: int
    seconds: float
    peak_rss_mb: float
    summary: dict[str, Any]

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        keep = ("accepted", "duplicates", "refused", "valid")
        return {
            "rows": self.rows,
            "rows_per_second": round(self.rows_per_second),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            **{key: self.summary.get(key) for key in keep},
        }


def call_rows(run_id: str, count: int) -> Any:
    """Calls on winter weekdays (no ambiguous times), every 50th in an unknown queue."""
    chance = random.Random(run_id)
    start = datetime(2025, 1, 6, 8, 0)
    for n in range(count):
        at = start + timedelta(seconds=n * 7 % (9 * 3600), days=(n * 7 // (9 * 3600)) % 60)
        answered = chance.random() < 0.9
        queue = "Parking Fines" if n % REFUSED_EVERY == 0 else chance.choice(QUEUES)
        yield [
            f"bench-{run_id}-{n}",
            at.strftime("%Y-%m-%d %H:%M:%S"),
            queue,
            str(chance.randint(0, 600)),
            "Answered" if answered else "Abandoned",
            str(chance.choice((0, 0, 0, 1, 2))) if answered else "",
            "Customer Services" if answered else "",
        ]


def write_csv(path: Path, run_id: str, count: int) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(call_rows(run_id, count))


def write_xlsx(path: Path, run_id: str, count: int) -> None:
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(COLUMNS)
    for row in call_rows(run_id, count):
        sheet.append(row)
    workbook.save(path)


def run_import(name: str, path: Path, rows: int, *args: str) -> Run:
    """One `civicpulse import` child; its own wall time and peak RSS."""
    command = [
        sys.executable, "-m", "civicpulse", "import", str(path), "--mapping", str(MAPPING),
        "--no-progress", "--report", str(path.with_suffix(f".{name}.rejected.csv")), *args,
    ]  # fmt: skip
    say(f"{name}: {rows} rows")
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 1):
        raise RuntimeError(f"{name}: civicpulse import exited {child.returncode}")
    summary = json.loads(output.decode().strip().splitlines()[-1])
    run = Run(name, rows, seconds, usage.ru_maxrss / 1024, summary)
    say(f"{name}: {run.rows_per_second:,.0f} rows/s, peak RSS {run.peak_rss_mb:.0f} MB")
    return run


async def real_imports(path: Path, rows: int, bootstrap: str, database_url: str) -> list[Run]:
    async with scratch_database(database_url, f"bench_import_{uuid.uuid4().hex[:8]}") as url:
        intake = ServiceProcess(
            "services.intake",
            {
                "CIVICPULSE_KAFKA_BOOTSTRAP": bootstrap,
                "CIVICPULSE_DATABASE_URL": url,
                "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
                "CIVICPULSE_INTAKE_GROUP_ID": f"bench-import-{uuid.uuid4().hex[:8]}",
                "CIVICPULSE_INTAKE_API_KEYS": json.dumps({"telephony": hash_api_key(API_KEY)}),
                "CIVICPULSE_LOG_LEVEL": "WARNING",
            },
            path.with_name("intake.log"),
        )
        intake.start()
        try:
            await asyncio.to_thread(intake.wait_healthy)
            target = ("--intake-url", intake.base_url, "--api-key", API_KEY)
            first = await asyncio.to_thread(run_import, "http", path, rows, *target)
            again = await asyncio.to_thread(run_import, "http_again", path, rows, *target)
        finally:
            intake.stop()
    return [first, again]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the dry run")
    parser.add_argument("--real-rows", type=int, default=None, help="rows sent for real")
    parser.add_argument("--xlsx-rows", type=int, default=50_000, help="rows of the workbook")
    options = parser.parse_args()
    run_id = uuid.uuid4().hex[:8]
    real_rows = options.real_rows if options.real_rows is not None else options.rows
    folder = Path(tempfile.mkdtemp(prefix="cp-bench-import-"))
    try:
        say(f"writing {options.rows} rows to {folder}")
        write_csv(folder / "calls.csv", run_id, options.rows)
        runs = [run_import("dry_run_csv", folder / "calls.csv", options.rows, "--dry-run")]
        if options.xlsx_rows:
            write_xlsx(folder / "calls.xlsx", run_id, options.xlsx_rows)
            runs.append(
                run_import("dry_run_xlsx", folder / "calls.xlsx", options.xlsx_rows, "--dry-run")
            )
        if real_rows:
            write_csv(folder / "real.csv", run_id, real_rows)
            with infrastructure() as endpoints:
                bootstrap, database_url = endpoints.kafka_bootstrap, endpoints.database_url
                runs += asyncio.run(
                    real_imports(folder / "real.csv", real_rows, bootstrap, database_url)
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print_summary("import_throughput", {r.name: r.as_dict() for r in runs})


if __name__ == "__main__":
    main()
