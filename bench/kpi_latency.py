"""KPI latency: from publishing a contact to seeing it counted in `GET /v1/kpis`.

Two figures, on the real broker and database, with intake and metrics running as
operators run them (`python -m services.intake`, `python -m services.metrics`):

1. Freshness at a steady rate: raw contact records are published to
   `civicpulse.contacts.raw` at `--rate` per second (default 1,000) for
   `--seconds`; intake validates them and publishes canonical events, metrics
   applies them. Every 100 records the bench notes when it published them; a
   poller calls `GET /v1/kpis` for the bench's own day as fast as it answers,
   and the first answer counting record N gives that checkpoint's latency
   (publish → visible), p50 and p99. The first `--warmup` seconds (group joins)
   are not counted.
2. Reading the history: about `--history-events` events' worth of aggregate rows
   (every measure, every service area and channel, every day of `--years`
   financial years, five by default: 36 x 15 x 6 x 1,827 = 5.9M rows, every
   cell filled, more than a council's sparse real counters) are written with
   COPY into the metrics tables, with the monthly sums and rollups the service
   keeps beside them. Then `GET /v1/kpis` is timed `--requests` times with
   `--clients` (8) readers at once: over the whole span (the same request again
   and again, so the service's KPI cache answers it), and as a managers' mix
   (months, quarters and years around random days of the history, every area or
   one area, channel or both, every KPI or a few: nearly every request differs,
   so PostgreSQL answers it); then one by one for a year, a quarter and a month,
   with and without a filter: p50, p95 and p99 per query.

    python -m bench.kpi_latency --rate 1000 --seconds 30 --json

Uses `CIVICPULSE_KAFKA_BOOTSTRAP` and `CIVICPULSE_DATABASE_URL` if both are set,
else starts a throwaway local stack. The services use a scratch database (dropped
at the end) and consumer groups placed at the topics' current end. Side effects
on a shared stack: the run's records stay on `civicpulse.contacts.raw` and
`civicpulse.contacts` (ids start `kpibench-<run id>-`), dated on one day of
the year 2000, so no live KPI counts them.
"""

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from bench.support import (
    Percentiles,
    infrastructure,
    percentiles,
    place_group,
    print_summary,
    say,
)
from bench.support import end_offsets as topic_end_offsets
from civicpulse.infra import pick_free_port, scratch_database
from civicpulse.processes import ServiceProcess
from services.metrics.domain import ALL_MEASURES, KPIS_BY_NAME
from services.metrics.periods import DateRange, Period, period_containing
from services.metrics.store.rollups import refill_rollups
from shared.api_keys import hash_api_key
from shared.events.vocabulary import Channel
from shared.kafka import ensure_topics
from shared.settings import DEFAULT_VOCABULARY_FILE
from shared.topics import ALL_TOPICS, CANONICAL_TOPICS, CONTACTS_RAW
from shared.vocabulary import load_service_areas

CHECKPOINT_EVERY = 100
TICK_SECONDS = 0.01
YEAR_START = date(2023, 4, 1)  # the financial year 2023/24 ends the history


@dataclass(frozen=True, slots=True)
class Options:
    rate: int
    seconds: float
    warmup: float
    history_events: int
    requests: int
    json: bool
    years: int = 5
    clients: int = 8


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.kpi_latency", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--rate", type=int, default=1000, help="contacts per second")
    parser.add_argument(
        "--seconds", type=float, default=30, help="publishing time, warm-up included"
    )
    parser.add_argument("--warmup", type=float, default=5, help="seconds not counted at the start")
    parser.add_argument(
        "--history-events", type=int, default=10_000_000, help="events' worth of aggregates"
    )
    # 1,000 GETs put ten samples above the p99; with 200 it was the second highest.
    parser.add_argument("--requests", type=int, default=1000, help="timed GETs per query")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument(
        "--years", type=int, default=5, help="financial years of history, ending 2023/24 (5)"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent readers (8)")
    parser.add_argument(
        "--quick", action="store_true", help="200/s for 10 s, one year of 1M events, 80 GETs"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rate, args.seconds, args.warmup = 200, 10.0, 2.0
        args.years, args.history_events, args.requests = 1, 1_000_000, 80
    return Options(
        args.rate,
        args.seconds,
        args.warmup,
        args.history_events,
        args.requests,
        args.json,
        args.years,
        args.clients,
    )


# -- part 1: freshness at a steady rate ------------------------------------------------


def raw_record(run_id: str, n: int, day: date, rng: random.Random) -> bytes:
    occurred = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    return json.dumps(
        {
            "record_type": "contact_received",
            "idempotency_key": f"kpibench-{run_id}-{n}",
            "source": "telephony",
            "contact_id": f"kpibench-{run_id}-{n}",
            "occurred_at": occurred.isoformat(),
            "channel": "phone",
            "service_area": "planning",
            "kind": "enquiry",
            "customer_ref": f"KB-{rng.randrange(20_000)}",
            "answered_by_team": "planning",
            "resolved_at_first_contact": rng.random() < 0.7,
            "wait_seconds": round(rng.uniform(0, 120), 1),
        }
    ).encode()


class Freshness:
    """Checkpoints of what was published when, and when GET /v1/kpis first counted them."""

    def __init__(self) -> None:
        self.checkpoints: list[tuple[int, float]] = []  # (records published, when)
        self.latencies: list[float] = []
        self.seen_index = 0
        self.counted = 0.0
        self.polls = 0

    def observe(self, counted: float, now: float, warmup_until: float) -> None:
        self.counted = counted
        while self.seen_index < len(self.checkpoints):
            published, at = self.checkpoints[self.seen_index]
            if published > counted:
                break
            if at >= warmup_until:
                self.latencies.append(now - at)
            self.seen_index += 1


async def publish_steadily(
    bootstrap: str, run_id: str, day: date, options: Options, freshness: Freshness
) -> float:
    """Publish `rate` records a second for `seconds`; returns the achieved rate."""
    rng = random.Random(run_id)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    total = int(options.rate * options.seconds)
    started = time.perf_counter()
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        while sent < total:
            due = min(total, int((time.perf_counter() - started) * options.rate) + 1)
            while sent < due:
                key = f"kpibench-{run_id}-{sent}".encode()
                pending.append(
                    await producer.send(
                        CONTACTS_RAW.name, raw_record(run_id, sent, day, rng), key=key
                    )
                )
                sent += 1
                if sent % CHECKPOINT_EVERY == 0:
                    freshness.checkpoints.append((sent, time.perf_counter()))
            await asyncio.sleep(TICK_SECONDS)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent / (time.perf_counter() - started)


async def poll_kpis(
    client: httpx.AsyncClient,
    day: date,
    freshness: Freshness,
    total: int,
    warmup_until: float,
    give_up_at: float,
) -> None:
    params = {"from": day.isoformat(), "period": "day", "service_area": "planning"}
    while freshness.counted < total and time.perf_counter() < give_up_at:
        response = await client.get("/v1/kpis", params=params)
        response.raise_for_status()
        counted = next(
            row["value"] for row in response.json()["kpis"] if row["kpi"] == "contacts_received"
        )
        freshness.polls += 1
        freshness.observe(counted, time.perf_counter(), warmup_until)
        await asyncio.sleep(0.005)


# -- part 2: a year of history -----------------------------------------------------------


def history_span(years: int) -> DateRange:
    """`years` financial years, the last of them 2023/24."""
    last = period_containing(YEAR_START, Period.YEAR)
    first = period_containing(YEAR_START.replace(year=YEAR_START.year - years + 1), Period.YEAR)
    return DateRange(first.start, last.end)


async def write_history(database_url: str, events: int, years: int) -> tuple[int, float]:
    """COPY `years` of aggregate rows into the live generation; returns (rows, seconds)."""
    areas = sorted(load_service_areas(DEFAULT_VOCABULARY_FILE))
    channels = [channel.value for channel in Channel]
    year = history_span(years)
    days = [year.start + timedelta(days=n) for n in range((year.end - year.start).days + 1)]
    per_cell = events / (len(days) * len(areas) * len(channels))
    rng = random.Random(7)
    measures = sorted(ALL_MEASURES)
    started = time.perf_counter()
    connection = await asyncpg.connect(database_url)
    try:
        generation = await connection.fetchval("SELECT generation FROM metrics_current")
        rows: list[tuple[Any, ...]] = []
        count = 0
        for day in days:
            for area in areas:
                for channel in channels:
                    for measure in measures:
                        value = max(0.0, rng.gauss(per_cell, per_cell / 4))
                        rows.append((generation, day, measure, area, channel, float(int(value))))
            if len(rows) > 200_000:
                await _copy(connection, rows)
                count += len(rows)
                rows = []
        await _copy(connection, rows)
        count += len(rows)
        # The service keeps monthly sums beside the daily rows in the same transaction.
        await connection.execute(
            """
            INSERT INTO metrics_monthly AS m
                (generation, month, measure, service_area, channel, value)
            SELECT generation, date_trunc('month', day)::date, measure, service_area, channel,
                   sum(value)
            FROM metrics_aggregates WHERE generation = $1 AND day BETWEEN $2 AND $3
            GROUP BY 1, 2, 3, 4, 5
            ON CONFLICT (generation, month, measure, service_area, channel)
            DO UPDATE SET value = m.value + excluded.value
            """,
            generation,
            year.start,
            year.end,
        )
        # ... and the sums across areas and channels, as its batches keep them.
        await refill_rollups(connection, generation, year)
        # Rows written behind the service's back must move its applied mark, as a batch
        # does, or its KPI cache would rightly go on answering from before them.
        await connection.execute(
            """
            INSERT INTO metrics_topic_progress AS p (generation, topic, events,
                last_occurred_at, last_recorded_at, last_applied_at)
            VALUES ($1, 'kpibench.history', $2, now(), now(), now())
            ON CONFLICT (generation, topic) DO UPDATE SET events = p.events + excluded.events
            """,
            generation,
            count,
        )
        for table in ("metrics_aggregates", "metrics_monthly", "metrics_rollups"):
            await connection.execute(f"ANALYZE {table}")
    finally:
        await connection.close()
    return count, time.perf_counter() - started


async def _copy(connection: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    await connection.copy_records_to_table(
        "metrics_aggregates",
        records=rows,
        columns=["generation", "day", "measure", "service_area", "channel", "value"],
    )


async def time_concurrent(
    client: httpx.AsyncClient, params: dict[str, str], requests: int, clients: int
) -> Percentiles:
    """`clients` readers at once, each timing its share of `requests` GETs one after another."""

    async def reader(count: int) -> list[float]:
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            response = await client.get("/v1/kpis", params=params)
            samples.append(time.perf_counter() - started)
            response.raise_for_status()
        return samples

    shares = [requests // clients + (n < requests % clients) for n in range(clients)]
    results = await asyncio.gather(*(reader(share) for share in shares))
    return percentiles([sample for samples in results for sample in samples])


def managers_mix(span: DateRange, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """What managers' screens and reports ask, spread over the history: a month (half of
    the time), a quarter or a financial year around a random day; every area, one area,
    one channel or both; every KPI or two or three named. Nearly every request differs,
    so these are reads from PostgreSQL, not from the service's KPI cache."""
    areas = sorted(load_service_areas(DEFAULT_VOCABULARY_FILE))
    names = sorted(KPIS_BY_NAME)
    mix: list[dict[str, Any]] = []
    for _ in range(count):
        day = span.start + timedelta(days=rng.randrange(span.days))
        period = rng.choices(["month", "quarter", "year"], weights=[5, 3, 2])[0]
        params: dict[str, Any] = {"from": day.isoformat(), "period": period}
        scope = rng.choices(["all", "area", "channel", "both"], weights=[4, 3, 2, 1])[0]
        if scope in ("area", "both"):
            params["service_area"] = rng.choice(areas)
        if scope in ("channel", "both"):
            params["channel"] = rng.choice([channel.value for channel in Channel])
        if rng.random() < 0.5:
            params["kpi"] = rng.sample(names, rng.randint(2, 3))
        mix.append(params)
    return mix


async def time_mix(
    client: httpx.AsyncClient, mix: Sequence[dict[str, Any]], clients: int
) -> Percentiles:
    """`clients` readers at once, each timing its share of `mix`, one after another."""

    async def reader(share: Sequence[dict[str, Any]]) -> list[float]:
        samples = []
        for params in share:
            started = time.perf_counter()
            response = await client.get("/v1/kpis", params=params)
            samples.append(time.perf_counter() - started)
            response.raise_for_status()
        return samples

    results = await asyncio.gather(*(reader(mix[n::clients]) for n in range(clients)))
    return percentiles([sample for samples in results for sample in samples])


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU the processes have used (Linux /proc), 0 for those gone."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """CPU used per request by the metrics service and by its PostgreSQL backends: what
    the reads cost whatever else the machine is doing, unlike their latency."""

    service_pid: int
    database_url: str
    figures: dict[str, dict[str, float]]

    async def measure(
        self, label: str, requests: int, timed: Awaitable[Percentiles]
    ) -> Percentiles:
        connection = await asyncpg.connect(self.database_url)
        try:
            backends = [
                row["pid"]
                for row in await connection.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid()"
                )
            ]
        finally:
            await connection.close()
        service, database = cpu_seconds([self.service_pid]), cpu_seconds(backends)
        result = await timed
        self.figures[label] = {
            "service_cpu_ms_per_request": round(
                (cpu_seconds([self.service_pid]) - service) * 1000 / requests, 2
            ),
            "postgres_cpu_ms_per_request": round(
                (cpu_seconds(backends) - database) * 1000 / requests, 2
            ),
        }
        return result


async def time_reads(
    client: httpx.AsyncClient, requests: int, years: int, clients: int, cpu: CpuMeter
) -> dict[str, Percentiles]:
    span = history_span(years)
    whole = {"from": span.start.isoformat(), "to": span.end.isoformat()}
    await client.get("/v1/kpis", params=whole)  # warm the caches once
    label = f"{years} years, {clients} concurrent clients"
    results = {
        label: await cpu.measure(label, requests, time_concurrent(client, whole, requests, clients))
    }
    say(f"GET /v1/kpis {label}: p99 {results[label].p99_ms:.1f} ms")
    mixed = f"managers' mix, {clients} concurrent clients"
    mix = managers_mix(span, requests, random.Random(15))
    results[mixed] = await cpu.measure(mixed, requests, time_mix(client, mix, clients))
    say(f"GET /v1/kpis {mixed}: p99 {results[mixed].p99_ms:.1f} ms")
    queries = {
        "year": {"from": YEAR_START.isoformat(), "period": "year"},
        "year, one service area": {
            "from": YEAR_START.isoformat(),
            "period": "year",
            "service_area": "waste",
        },
        "quarter": {"from": "2023-10-01", "period": "quarter"},
        "month, one channel": {"from": "2024-01-01", "period": "month", "channel": "phone"},
    }
    for label, params in queries.items():
        await client.get("/v1/kpis", params=params)  # warm the caches once
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.get("/v1/kpis", params=params)
            samples.append(time.perf_counter() - started)
            response.raise_for_status()
        results[label] = percentiles(samples)
        say(f"GET /v1/kpis {label}: p50 {results[label].p50_ms:.1f} ms")
    return results


# -- wiring ---------------------------------------------------------------------------------


async def run(options: Options, bootstrap: str, database_url: str) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    day = date(2000, 1, 1) + timedelta(days=random.Random(run_id).randrange(365))
    token = secrets.token_urlsafe(24)
    await ensure_topics(bootstrap, ALL_TOPICS)
    logs = Path(tempfile.mkdtemp(prefix="kpibench-"))
    async with scratch_database(database_url, f"civicpulse_kpibench_{run_id}") as scratch_url:
        raw_offsets = await topic_end_offsets(bootstrap, [CONTACTS_RAW.name])
        intake_group = f"kpibench-intake-{run_id}"
        await place_group(bootstrap, intake_group, raw_offsets)
        canonical = await topic_end_offsets(bootstrap, [t.name for t in CANONICAL_TOPICS])
        metrics_group = f"kpibench-metrics-{run_id}"
        await place_group(bootstrap, metrics_group, canonical)
        common = {"CIVICPULSE_KAFKA_BOOTSTRAP": bootstrap, "CIVICPULSE_DATABASE_URL": scratch_url}
        intake = ServiceProcess(
            "services.intake",
            {
                **common,
                "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
                "CIVICPULSE_INTAKE_GROUP_ID": intake_group,
                "CIVICPULSE_INTAKE_API_KEYS": json.dumps({"bench": hash_api_key(token)}),
                "CIVICPULSE_LOG_LEVEL": "WARNING",
            },
            logs / "intake.log",
        )
        metrics = ServiceProcess(
            "services.metrics",
            {
                **common,
                "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
                "CIVICPULSE_METRICS_GROUP_ID": metrics_group,
                "CIVICPULSE_METRICS_API_TOKENS": json.dumps(
                    {"bench": {"role": "manager", "hash": hash_api_key(token)}}
                ),
                "CIVICPULSE_LOG_LEVEL": "WARNING",
            },
            logs / "metrics.log",
        )
        try:
            for process in (intake, metrics):
                process.start()
            for process in (intake, metrics):
                await asyncio.to_thread(process.wait_healthy)
            say(f"intake and metrics are up (logs in {logs}); publishing at {options.rate}/s")
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(
                base_url=metrics.base_url, headers=headers, timeout=30
            ) as client:
                freshness = Freshness()
                total = int(options.rate * options.seconds)
                start = time.perf_counter()
                poller = asyncio.create_task(
                    poll_kpis(
                        client,
                        day,
                        freshness,
                        total,
                        start + options.warmup,
                        start + options.seconds + 120,
                    )
                )
                achieved = await publish_steadily(bootstrap, run_id, day, options, freshness)
                await poller
                if freshness.counted < total:
                    say(f"only {freshness.counted:.0f} of {total} counted within 120 s")
                latency = percentiles(freshness.latencies)
                say(f"publish → visible: p50 {latency.p50_ms:.0f} ms, p99 {latency.p99_ms:.0f} ms")
                say(f"writing {options.history_events:,} events' worth of aggregates")
                rows, copy_seconds = await write_history(
                    scratch_url, options.history_events, options.years
                )
                say(f"{rows:,} aggregate rows in {copy_seconds:.1f} s")
                assert metrics.pid is not None
                cpu = CpuMeter(metrics.pid, scratch_url, {})
                reads = await time_reads(
                    client, options.requests, options.years, options.clients, cpu
                )
        finally:
            for process in (intake, metrics):
                process.stop()
    return {
        "rate_target": options.rate,
        "rate_achieved": round(achieved, 1),
        "records": total,
        "counted": freshness.counted,
        # Checkpoints never seen counted: their latency is unknown, so the freshness
        # figures are void (and the run fails) rather than quietly better.
        "checkpoints_never_seen": len(freshness.checkpoints) - freshness.seen_index,
        "polls": freshness.polls,
        "freshness": asdict(latency),
        "history_events": options.history_events,
        "history_years": options.years,
        "clients": options.clients,
        "history_rows": rows,
        "history_copy_seconds": round(copy_seconds, 1),
        "reads": {label: asdict(p) for label, p in reads.items()},
        "cpu": cpu.figures,
        # Other work on the machine moves these figures more than anything here does.
        "load_average": [round(load, 2) for load in os.getloadavg()],
    }


def table(figures: dict[str, Any]) -> str:
    fresh = figures["freshness"]
    lines = [
        f"contacts published through intake: {figures['records']:,} at "
        f"{figures['rate_achieved']:,.0f}/s (target {figures['rate_target']:,}/s), "
        f"{figures['counted']:,.0f} counted",
        f"publish → visible in GET /v1/kpis ({fresh['count']} checkpoints, {figures['polls']} "
        f"polls): p50 {fresh['p50_ms']:.0f} ms, p99 {fresh['p99_ms']:.0f} ms, "
        f"max {fresh['max_ms']:.0f} ms",
        f"history: {figures['history_years']} years, {figures['history_events']:,} events as"
        f" {figures['history_rows']:,} "
        f"aggregate rows (COPY {figures['history_copy_seconds']} s)",
        f"{'GET /v1/kpis over the history':<40} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
        f" {'max ms':>8}",
    ]
    for label, p in figures["reads"].items():
        lines.append(
            f"  {label:<38} {p['p50_ms']:>8.1f} {p['p95_ms']:>8.1f} {p['p99_ms']:>8.1f}"
            f" {p['max_ms']:>8.1f}"
        )
    for label, cpu in figures["cpu"].items():
        lines.append(
            f"CPU per request, {label}: service {cpu['service_cpu_ms_per_request']} ms,"
            f" PostgreSQL {cpu['postgres_cpu_ms_per_request']} ms"
        )
    lines.append(f"load average (1, 5, 15 min) at the end: {figures['load_average']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    with infrastructure() as endpoints:
        figures = asyncio.run(run(options, endpoints.kafka_bootstrap, endpoints.database_url))
    print(table(figures))
    if figures["checkpoints_never_seen"]:
        print(f"{figures['checkpoints_never_seen']} checkpoints never seen counted: FAILED")
    print_summary("kpi_latency", figures)
    return 1 if figures["checkpoints_never_seen"] else 0


if __name__ == "__main__":
    sys.exit(main())
