"""The whole pipeline under rising load, beside the broker's own rate.

Runs all four services as `python -m services.X` processes (on the stack named by
`CIVICPULSE_KAFKA_BOOTSTRAP`/`CIVICPULSE_DATABASE_URL`, else a throwaway one), then
publishes contact records to intake's raw topic at rising rates. What counts is what
the metrics service counts, read back through its API:

- Checkpoints: one record in every `N / 1,000` (at least 1,000 per step once a step
  has that many records) is tracked by its contact id. It is dated now like every
  other record: its own cell is its row in metrics' `metrics_contact_facts`, written
  in the transaction that counts it, and `GET /v1/kpis` reads what that transaction
  committed (its cache is keyed by the last applied batch). The first sweep of the
  bench's poll that finds the row gives the checkpoint's latency, publish → counted.
  Contact ids are new in every step, so steps never collide. A checkpoint never seen
  counted fails the step: no lost sample vanishes. (Until 2 December 2026 each
  checkpoint sat alone on a day of its own from 2000, read through
  `GET /v1/kpis/contacts_received/series`: feedback skipped those as stale, a fifth
  of a 250/s step's records.)
- Every record is dated now, from residents who contact the council as
  residents do: of a step's customers 60 % contact once that day, 25 % twice,
  10 % three times and 5 % four times (`CONTACTS_A_DAY`, 1.6 contacts each on
  average, never more than four), in a shuffled order, so a step of N records has
  about N / 1.6 customers. A repeat within the day is a re-contact: it loses the
  earlier contact's first contact resolution (metrics' re-contact check) and falls
  in feedback's quiet period, in the proportions a council sees rather than in
  nearly every record. 80 % of them have a contact route (`ROUTE_SHARE`), so
  feedback surveys, suppresses for the quiet period, or for no route. Each step
  has customers of its own: neither an earlier step nor an earlier run on a
  long-lived stack has surveyed them, nor left them a contact history. (Until
  2 December 2026 each step had 2,000 customers contacting 10 to 20 times in the
  step: every batch lost most of its FCR candidates and rewrote that many fact
  rows, which no council's traffic does.) Their routes are written straight into
  feedback's table in one statement (`give_contact_routes`): a step's 12,000 to
  25,000 `PUT`s would take minutes on a shared machine; one customer per step still
  goes through `PUT /v1/customers/{ref}/contact-route`.
- A steady state, not a new database's first minute: a warm-up (`WARM_UP`, not
  reported) fills every table and runs Kafka's hot paths until the JVM has compiled
  them (after 250/s for 8 s the first reported step paid about 5 more of Kafka's
  CPU seconds than later, faster steps; after this one, about 2 more); each step
  starts with `ANALYZE`, as autovacuum keeps a long-lived database's statistics.
  Without them the services' prepared statements are planned on tables with no
  statistics, and PostgreSQL
  keeps those plans until autovacuum's first visit (up to `autovacuum_naptime`, a
  minute, after the data arrived); some of them (metrics' re-contact UPDATE, the
  timers' upsert) then scan a whole table per batch (bench/README.md has the
  evidence). `--cold` leaves the warm-up and the ANALYZE out, to measure that.
- "achieved" is the records counted in `GET /v1/kpis` (today's contacts received,
  less the count before the step) per second, from the first publish to the moment
  the count reached the records sent.

A step is complete when every checkpoint was seen counted and, once every consumer
group has caught up, `GET /v1/kpis` counts exactly the records sent: fewer is a loss,
more is a record counted twice (or someone else's traffic on the same stack: run it
on a stack of its own). It is sustained when it is complete, the achieved rate is at least
95 % of the target and p99 is under 1 s. The ladder stops after the first step that
does not count everything. Then the raw broker's rate from Kafka's own
`org.apache.kafka.tools.ProducerPerformance` and the sustained rate as a share of it.

    python -m bench.pipeline --rates 250,500,1000,2000 --seconds 20
    python -m bench.pipeline --quick
"""

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from bench.stages import contacts_end, trace_stages
from bench.support import (
    CpuAccount,
    CpuSampler,
    Endpoints,
    Offsets,
    Percentiles,
    end_offsets,
    groups_lag,
    infrastructure,
    infrastructure_pids,
    percentiles,
    place_group,
    print_summary,
    say,
)
from civicpulse import infra
from civicpulse.stack import SERVICES, Credentials, RunningSystem, start_services
from shared.kafka import ensure_topics
from shared.partitioner import KafkaPartitioner
from shared.topics import ALL_TOPICS, CONTACTS_RAW, DAY_MS, TopicSpec

P99_LIMIT_SECONDS = 1.0
ACHIEVED_SHARE = 0.95
CHECKPOINTS_WANTED = 1000
# Residents' contacts on one day: (times, share of the day's customers).
CONTACTS_A_DAY = ((1, 0.60), (2, 0.25), (3, 0.10), (4, 0.05))
ROUTE_SHARE = 0.8  # customers with a contact route on file
WARM_UP = (1000, 10.0)  # rate/s and seconds of the unreported first step
GIVE_UP_AFTER_S = 60.0
NICENESS = 10  # for --nice
CATCH_UP_S = 60.0  # how long the groups get to reach the topics' end after a step
TICK_S = 0.01
POLL_PERIOD_S = 0.05
LOCAL = ZoneInfo("Europe/London")  # metrics counts on local days
PERF_TOPIC = TopicSpec("bench.producer-perf", 6, DAY_MS, "ProducerPerformance scratch topic")


@dataclass(frozen=True, slots=True)
class Plan:
    rate: int
    seconds: float
    customers: str = ""  # the step's own customers: customer_ref(n, customers)

    @property
    def records(self) -> int:
        return int(self.rate * self.seconds)

    @property
    def every(self) -> int:
        return max(1, self.records // CHECKPOINTS_WANTED)

    @property
    def checkpoints(self) -> int:
        return self.records // self.every


@dataclass(frozen=True, slots=True)
class Step:
    rate: int
    records: int
    counted: int  # by `GET /v1/kpis` once every group caught up
    checkpoints: int
    never_seen: int
    achieved: float
    latency: Percentiles
    poll_sweep: Percentiles  # one pass of the bench's poll: how late a count can be seen
    stages: dict[str, Percentiles] = field(default_factory=dict)  # with --trace
    cpu: CpuAccount | None = None  # CPU seconds per process over the step
    customers: int = 0  # the step's residents (`CONTACTS_A_DAY`)
    # Each service's consumer group once the step was all counted: records not yet
    # committed, and the seconds until it had committed everything (None: not in time).
    lag_at_end: dict[str, int] = field(default_factory=dict)
    caught_up_s: dict[str, float | None] = field(default_factory=dict)
    statements: list["Statement"] = field(default_factory=list)  # with --statements

    def cpu_ms_per_contact(self) -> dict[str, float]:
        if self.cpu is None or not self.counted:
            return {}
        return {role: 1000 * s / self.counted for role, s in self.cpu.seconds.items()}

    @property
    def complete(self) -> bool:
        return self.never_seen == 0 and self.counted == self.records

    @property
    def sustained(self) -> bool:
        return (
            self.complete
            and self.achieved >= ACHIEVED_SHARE * self.rate
            and self.latency.p99_ms < P99_LIMIT_SECONDS * 1000
        )


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement's share of a step's PostgreSQL time (pg_stat_statements)."""

    calls: int
    total_ms: float
    rows: int
    query: str  # the first characters, whitespace collapsed


STATEMENTS_SHOWN = 15


async def reset_statements(database_url: str) -> None:
    """Zero pg_stat_statements (preloaded by `civicpulse.infra`), creating it if need be."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await connection.execute("SELECT pg_stat_statements_reset()")
    finally:
        await connection.close()


async def top_statements(database_url: str) -> list[Statement]:
    """The statements that took the most execution time since `reset_statements`."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            """
            SELECT calls, total_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g') AS q
            FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY total_exec_time DESC LIMIT $1
            """,
            STATEMENTS_SHOWN,
        )
    finally:
        await connection.close()
    return [
        Statement(r["calls"], round(r["total_exec_time"], 1), r["rows"], r["q"][:110]) for r in rows
    ]


@dataclass
class Tracking:
    published_at: dict[str, float] = field(default_factory=dict)  # checkpoint's contact → when
    seen_at: dict[str, float] = field(default_factory=dict)
    # For --trace: the publish and seen times on the wall clock (the services'
    # timestamps are wall-clock).
    published_wall: dict[str, float] = field(default_factory=dict)
    seen_wall: dict[str, float] = field(default_factory=dict)
    sweeps: list[float] = field(default_factory=list)  # how long each poll sweep took
    counted: int = 0  # today's contacts in `GET /v1/kpis`, less the count before the step
    last_counted_at: float = 0.0  # when `counted` last grew


def record(
    run: str,
    n: int,
    occurred: datetime,
    customer: str,
    rng: random.Random,
    *,
    service_area: str = "planning",
    resolved_share: float = 0.7,
) -> bytes:
    return json.dumps(
        {
            "record_type": "contact_received",
            "idempotency_key": f"pipebench-{run}-{n}",
            "source": "telephony",
            "contact_id": f"pipebench-{run}-{n}",
            "occurred_at": occurred.isoformat(),
            "channel": "phone",
            "service_area": service_area,
            "kind": "enquiry",
            "customer_ref": customer,
            "answered_by_team": service_area,
            "resolved_at_first_contact": rng.random() < resolved_share,
            "wait_seconds": round(rng.uniform(0, 120), 1),
        }
    ).encode()


def customer_ref(n: int, group: str = "") -> str:
    return f"PB-{group}{n:05d}"


def daily_contacts(records: int, seed: str) -> list[int]:
    """Who sends each of a step's records: customer numbers, each as often as
    `CONTACTS_A_DAY` draws for it (one to four times), shuffled."""
    rng = random.Random(seed)
    times = [k for k, _ in CONTACTS_A_DAY]
    weights = [share for _, share in CONTACTS_A_DAY]
    senders: list[int] = []
    customer = 0
    while len(senders) < records:
        senders.extend([customer] * rng.choices(times, weights)[0])
        customer += 1
    del senders[records:]
    rng.shuffle(senders)
    return senders


def with_route(customer: int) -> bool:
    """`ROUTE_SHARE` of the customers, spread evenly over their numbers."""
    return int((customer + 1) * ROUTE_SHARE) > int(customer * ROUTE_SHARE)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record of a step, built and serialised before the step starts."""

    value: bytes
    key: bytes
    partition: int  # where the key's murmur2 hash puts it, as the producer would
    checkpoint: bool
    contact_id: str


def build_records(plan: Plan, senders: Sequence[int], partitions: Sequence[int]) -> list[Outgoing]:
    """Every record of the step, serialised, so the step's CPU is the sending alone.

    They are dated when they are built, moments before the step (no more than its
    length before they are sent): today, checkpoints too.
    """
    run = uuid.uuid4().hex[:8]
    rng = random.Random(run)
    partitioner = KafkaPartitioner()
    records: list[Outgoing] = []
    for n in range(plan.records):
        occurred = datetime.now(UTC)
        customer = customer_ref(senders[n], plan.customers)
        key = f"{run}-{n}".encode()
        records.append(
            Outgoing(
                value=record(run, n, occurred, customer, rng),
                key=key,
                partition=partitioner(key, list(partitions), list(partitions)),
                checkpoint=n % plan.every == 0 and n // plan.every < plan.checkpoints,
                contact_id=f"pipebench-{run}-{n}",
            )
        )
    return records


async def publish(
    producer: AIOKafkaProducer, plan: Plan, records: Sequence[Outgoing], tracking: Tracking
) -> None:
    """Send the step's records at its rate: each tick, what is due, one batch per partition.

    A record's Kafka timestamp is taken as it joins its batch, and a checkpoint's
    publish time just before: the latency is measured from the send, not the build.
    """
    started = time.perf_counter()
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    while sent < plan.records:
        due = min(plan.records, int((time.perf_counter() - started) * plan.rate) + 1)
        batches: dict[int, Any] = {}
        while sent < due:
            outgoing = records[sent]
            if outgoing.checkpoint:
                tracking.published_at[outgoing.contact_id] = time.perf_counter()
                tracking.published_wall[outgoing.contact_id] = time.time()
            batch = batches.get(outgoing.partition)
            if batch is None:
                batch = batches[outgoing.partition] = producer.create_batch()
            if batch.append(key=outgoing.key, value=outgoing.value, timestamp=None) is None:
                pending.append(
                    await producer.send_batch(
                        batch, CONTACTS_RAW.name, partition=outgoing.partition
                    )
                )
                batch = batches[outgoing.partition] = producer.create_batch()
                batch.append(key=outgoing.key, value=outgoing.value, timestamp=None)
            sent += 1
        for partition, batch in batches.items():
            pending.append(await producer.send_batch(batch, CONTACTS_RAW.name, partition=partition))
        await asyncio.sleep(TICK_S)
    await asyncio.gather(*pending)


async def contacts_today(client: httpx.AsyncClient, today: date) -> int:
    response = await client.get("/v1/kpis", params={"from": today.isoformat(), "period": "day"})
    response.raise_for_status()
    return int(
        next(r["value"] for r in response.json()["kpis"] if r["kpi"] == "contacts_received") or 0
    )


async def seen_counted(connection: asyncpg.Connection, contacts: Sequence[str]) -> list[str]:
    """Those of these contacts that metrics' live generation has counted: their fact row
    is written in the batch transaction that adds them to the counters."""
    rows = await connection.fetch(
        "SELECT contact_id FROM metrics_contact_facts"
        " WHERE generation = (SELECT generation FROM metrics_current)"
        " AND contact_id = ANY($1::text[])",
        contacts,
    )
    return [row["contact_id"] for row in rows]


async def poll(
    client: httpx.AsyncClient,
    connection: asyncpg.Connection,
    plan: Plan,
    tracking: Tracking,
    today: date,
    baseline: int,
) -> None:
    """Sweep the unseen checkpoints, and today's count, until all are counted."""
    give_up_at = time.perf_counter() + plan.seconds + GIVE_UP_AFTER_S
    while time.perf_counter() < give_up_at:
        sweep_began = time.perf_counter()
        waiting = [c for c in tracking.published_at if c not in tracking.seen_at]
        if waiting:
            found = await seen_counted(connection, waiting)
            now, wall = time.perf_counter(), time.time()
            for contact in found:
                tracking.seen_at[contact] = now
                tracking.seen_wall[contact] = wall
        counted = await contacts_today(client, today) - baseline
        tracking.sweeps.append(time.perf_counter() - sweep_began)
        if counted > tracking.counted:
            tracking.counted = counted
            tracking.last_counted_at = time.perf_counter()
        if len(tracking.seen_at) == plan.checkpoints and tracking.counted >= plan.records:
            return
        # Sweeps start every POLL_PERIOD_S at most: as often as a sweep under load
        # takes anyway, without the idle metrics process answering dozens a second.
        await asyncio.sleep(max(0.0, POLL_PERIOD_S - (time.perf_counter() - sweep_began)))


def cpu_sampler(system: RunningSystem) -> CpuSampler:
    """CPU of the four services, Kafka's JVM, PostgreSQL (postmaster and backends), the bench."""
    sampler = CpuSampler()

    def service(name: str) -> Callable[[], list[tuple[int, bool]]]:
        def pids() -> list[tuple[int, bool]]:
            pid = system.services[name].pid
            return [(pid, False)] if pid is not None else []

        return pids

    for name in system.services:
        sampler.track(name, service(name))
    endpoints = Endpoints(system.infra.kafka_bootstrap, system.infra.database_url)
    for role, pids in infrastructure_pids(endpoints).items():
        sampler.track(role, pids)
    bench = os.getpid()
    sampler.track("bench", lambda: [(bench, False)])
    return sampler


async def measure_step(
    system: RunningSystem,
    plan: Plan,
    senders: Sequence[int],
    *,
    trace: bool = False,
    sampler: CpuSampler | None = None,
    groups: dict[str, str] | None = None,
    placed: Offsets | None = None,
    statements: bool = False,
) -> Step:
    headers = {"Authorization": f"Bearer {system.credentials.manager_token}"}
    tracking = Tracking()
    since = await contacts_end(system.infra.kafka_bootstrap) if trace else {}
    async with httpx.AsyncClient(
        base_url=system.url("metrics"), headers=headers, timeout=30
    ) as client:
        today = datetime.now(LOCAL).date()
        baseline = await contacts_today(client, today)
        connection = await asyncpg.connect(system.infra.database_url)  # the poll's
        try:
            producer = AIOKafkaProducer(
                bootstrap_servers=system.infra.kafka_bootstrap,
                enable_idempotence=True,
                linger_ms=5,
            )
            await producer.start()
            try:
                partitions = sorted(await producer.partitions_for(CONTACTS_RAW.name))
                records = build_records(plan, senders, partitions)
                if statements:
                    await reset_statements(system.infra.database_url)
                if sampler is not None:
                    sampler.start()
                started = time.perf_counter()
                poller = asyncio.create_task(
                    poll(client, connection, plan, tracking, today, baseline)
                )
                await publish(producer, plan, records, tracking)
            finally:
                await producer.stop()
            await poller
        finally:
            await connection.close()
        # The CPU account ends once every group has caught up (or CATCH_UP_S passed): what
        # a service did for the step after its records were counted is the step's cost too.
        lag_at_end, caught_up_s = await catch_up(
            system.infra.kafka_bootstrap, groups or {}, placed or {}
        )
        cpu = sampler.stop() if sampler is not None else None
        # Counted again once everything is consumed: a record counted twice shows here.
        counted = await contacts_today(client, today) - baseline
    top = await top_statements(system.infra.database_url) if statements else []
    latencies = [
        tracking.seen_at[contact] - at
        for contact, at in tracking.published_at.items()
        if contact in tracking.seen_at
    ]
    # Per second from the first publish until the count reached the records sent (the
    # poll stops there), or, if it never did, until it last grew.
    elapsed = max(tracking.last_counted_at - started, 1e-9)
    achieved = min(tracking.counted, plan.records) / elapsed
    stages = {}
    if trace:
        stages = await trace_stages(
            system.infra.kafka_bootstrap,
            system.infra.database_url,
            since,
            tracking.published_wall,
            tracking.seen_wall,
        )
    return Step(
        rate=plan.rate,
        records=plan.records,
        counted=counted,
        checkpoints=plan.checkpoints,
        never_seen=plan.checkpoints - len(tracking.seen_at),
        achieved=achieved,
        latency=percentiles(latencies),
        poll_sweep=percentiles(tracking.sweeps),
        stages=stages,
        cpu=cpu,
        customers=len(set(senders)),
        lag_at_end=lag_at_end,
        caught_up_s=caught_up_s,
        statements=top,
    )


async def catch_up(
    bootstrap: str, groups: dict[str, str], placed: Offsets
) -> tuple[dict[str, int], dict[str, float | None]]:
    """Each group's lag now, and how long until it is at the end of its topics: whether
    the services off the checkpoints' path (feedback, complaints) keep up with the rate,
    rather than leaving the next step a backlog."""
    began = time.perf_counter()
    lag = await groups_lag(bootstrap, groups, placed)
    caught_up: dict[str, float | None] = {n: 0.0 for n, behind in lag.items() if not behind}
    while len(caught_up) < len(groups) and time.perf_counter() - began < CATCH_UP_S:
        await asyncio.sleep(0.25)
        waiting = {n: g for n, g in groups.items() if n not in caught_up}
        for name, behind in (await groups_lag(bootstrap, waiting, placed)).items():
            if not behind:
                caught_up[name] = round(time.perf_counter() - began, 2)
    return lag, {name: caught_up.get(name) for name in groups}


async def give_contact_routes(system: RunningSystem, group: str, routed: Sequence[int]) -> None:
    """These customers get an email route, so feedback surveys them.

    The first through feedback's API, the rest in one statement into the table that
    `PUT /v1/customers/{ref}/contact-route` writes (a step has up to 20,000).
    """
    if not routed:
        return
    first, rest = routed[0], routed[1:]
    headers = {"X-API-Key": system.credentials.crm_key}
    async with httpx.AsyncClient(
        base_url=system.url("feedback"), headers=headers, timeout=30
    ) as client:
        response = await client.put(
            f"/v1/customers/{customer_ref(first, group)}/contact-route",
            json={"email": f"resident{first}@example.org"},
        )
        response.raise_for_status()
    connection = await asyncpg.connect(system.infra.database_url)
    try:
        await connection.execute(
            "INSERT INTO feedback_contact_routes (customer_ref, email, updated_at)"
            " SELECT r, e, now() FROM unnest($1::text[], $2::text[]) AS x(r, e)"
            " ON CONFLICT (customer_ref) DO NOTHING",
            [customer_ref(n, group) for n in rest],
            [f"resident{n}@example.org" for n in rest],
        )
    finally:
        await connection.close()


async def analyze(database_url: str) -> None:
    """Statistics as autovacuum keeps them on a long-lived database; re-plans the
    services' prepared statements (an ANALYZE invalidates their cached plans)."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


def feedback_work(system: RunningSystem) -> dict[str, float]:
    """Feedback's own counters: the surveys it scheduled, the cases it did not survey
    by reason, and the messages Notify took."""
    text = httpx.get(f"{system.url('feedback')}/metrics", timeout=30).text
    wanted = {
        "feedback_requests_scheduled",
        "feedback_requests_suppressed",
        "feedback_notifications_delivered",
    }
    totals: dict[str, float] = dict.fromkeys(sorted(wanted), 0.0)
    for family in text_string_to_metric_families(text):
        if family.name in wanted:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    totals[family.name] += sample.value
                    if reason := sample.labels.get("reason"):
                        name = f"{family.name}:{reason}"
                        totals[name] = totals.get(name, 0.0) + sample.value
    return totals


def broker_rate(bootstrap: str, records: int) -> float:
    """Kafka's own producer benchmark: records/s with acks=all and idempotence."""
    asyncio.run(ensure_topics(bootstrap, [PERF_TOPIC]))
    output = subprocess.run(
        [
            "java",
            "-Xmx512m",
            "-cp",
            infra.kafka_classpath(),
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            PERF_TOPIC.name,
            "--num-records",
            str(records),
            "--record-size",
            "400",
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={bootstrap}",
            "acks=all",
            "enable.idempotence=true",
            "linger.ms=5",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    summary = [line for line in output.splitlines() if "records sent" in line][-1]
    match = re.search(r"([\d.]+) records/sec", summary)
    if match is None:
        raise RuntimeError(f"unexpected ProducerPerformance output: {summary}")
    return float(match.group(1))


def report(steps: Sequence[Step], memory: dict[str, int | None], raw_rate: float) -> str:
    lines = [
        "rate/s  records  counted  checkpoints  never seen  achieved/s  p50 ms  p99 ms  sustained"
    ]
    for s in steps:
        lines.append(
            f"{s.rate:>6}  {s.records:>7}  {s.counted:>7}  {s.checkpoints:>11}  "
            f"{s.never_seen:>10}  {s.achieved:>10.0f}  {s.latency.p50_ms:>6.0f}  "
            f"{s.latency.p99_ms:>6.0f}  {'yes' if s.sustained else 'NO'}"
        )
    sustained = max((s.rate for s in steps if s.sustained), default=0)
    lines.append(f"sustained rate with end-to-end p99 < 1 s: {sustained} contacts/s")
    for s in steps:
        lines.append(
            f"{s.rate}/s: one poll sweep p50 {s.poll_sweep.p50_ms:.0f} ms,"
            f" p99 {s.poll_sweep.p99_ms:.0f} ms"
        )
        if s.lag_at_end:
            lines.append(
                f"  consumer lag once counted (records): {s.lag_at_end};"
                f" at the end after (s): {s.caught_up_s}"
            )
        if s.statements:
            lines.append("  PostgreSQL's statements by execution time (calls, ms, rows):")
        for statement in s.statements:
            lines.append(
                f"    {statement.calls:>6} {statement.total_ms:>9.0f} {statement.rows:>8}"
                f"  {statement.query}"
            )
        for stage, figures in s.stages.items():
            lines.append(
                f"  {stage:<34} p50 {figures.p50_ms:>6.0f} ms  p99 {figures.p99_ms:>6.0f} ms"
                f"  ({figures.count} checkpoints)"
            )
    roles = sorted({role for s in steps for role in s.cpu_ms_per_contact()})
    if roles:
        lines.append(
            "CPU ms per counted contact (CPU seconds from the step's start until every"
            " group caught up / records counted):"
        )
        heads = "  ".join(f"{role:>10}" for role in roles)
        lines.append(f"rate/s  {heads}       all  load avg")
        for s in steps:
            per = s.cpu_ms_per_contact()
            load = s.cpu.load_average[0] if s.cpu else float("nan")
            lines.append(
                f"{s.rate:>6}  "
                + "  ".join(f"{per.get(role, float('nan')):>10.2f}" for role in roles)
                + f"  {sum(per.values()):>8.2f}  {load:>8.2f}"
            )
        for s in steps:
            if s.cpu is not None:
                busy = s.cpu.machine_busy_seconds / max(s.cpu.machine_capacity_seconds, 1e-9)
                lines.append(
                    f"{s.rate}/s: machine {busy:.0%} busy over {s.cpu.wall_seconds:.1f} s;"
                    " CPU s: " + ", ".join(f"{r} {v:.1f}" for r, v in sorted(s.cpu.seconds.items()))
                )
    for name, rss in memory.items():
        lines.append(f"memory {name:<11} {rss / 2**20 if rss else float('nan'):.0f} MiB resident")
    lines.append(f"raw broker (ProducerPerformance, 400-byte records): {raw_rate:,.0f} records/s")
    lines.append(f"sustained / raw broker: {sustained / raw_rate:.4f} (target >= 0.015)")
    return "\n".join(lines)


GROUP_SETTINGS = {
    "intake": "CIVICPULSE_INTAKE_GROUP_ID",
    "complaints": "CIVICPULSE_COMPLAINTS_GROUP_ID",
    "feedback": "CIVICPULSE_FEEDBACK_GROUP_ID",
    "metrics": "CIVICPULSE_METRICS_GROUP_ID",
}


async def own_groups(bootstrap: str) -> dict[str, dict[str, str]]:
    """Each service's own consumer group, placed at the topics' current end: on a
    long-lived stack, an earlier backlog is not measured.
    """
    env, _ = await placed_groups(bootstrap)
    return env


async def placed_groups(bootstrap: str) -> tuple[dict[str, dict[str, str]], Offsets]:
    """`own_groups`, and the offsets every group was placed at."""
    await ensure_topics(bootstrap, ALL_TOPICS)
    ends = await end_offsets(bootstrap, [t.name for t in ALL_TOPICS])
    run = uuid.uuid4().hex[:8]
    env: dict[str, dict[str, str]] = {}
    for spec in SERVICES:
        group = f"pipebench-{spec.name}-{run}"
        await place_group(bootstrap, group, ends)
        env[spec.name] = {GROUP_SETTINGS[spec.name]: group}
    return env, ends


@dataclass(frozen=True, slots=True)
class NamedStack:
    """The stack the benchmark runs on, as much of `LocalInfra` as `start_services` reads."""

    kafka_bootstrap: str
    database_url: str
    kafka_nodes: tuple[str, ...]  # one per bootstrap address: the topics' replication


@contextmanager
def local_infra() -> Iterator[infra.LocalInfra]:
    with infrastructure() as endpoints:
        stack = NamedStack(
            endpoints.kafka_bootstrap,
            endpoints.database_url,
            tuple(endpoints.kafka_bootstrap.split(",")),
        )
        yield cast(infra.LocalInfra, stack)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rates", default="250,500,1000,2000", help="comma-separated steps")
    parser.add_argument("--seconds", type=float, default=20, help="publishing time per step")
    parser.add_argument(
        "--perf-records", type=int, default=300_000, help="ProducerPerformance records"
    )
    parser.add_argument(
        "--quick", action="store_true", help="rates 200,400 for 10 s, 50,000 broker records"
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="per-stage p50/p99 of the checkpoints (bench/stages.py says what each stage is)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="no warm-up and no ANALYZE before each step: a new database's first minutes",
    )
    parser.add_argument(
        "--nice",
        action="append",
        default=[],
        choices=[spec.name for spec in SERVICES],
        help=f"run this service at niceness {NICENESS} (repeatable), e.g. feedback",
    )
    parser.add_argument(
        "--statements",
        action="store_true",
        help="each step's top PostgreSQL statements by execution time (pg_stat_statements)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rates, args.seconds, args.perf_records = "200,400", 10.0, 50_000
    rates = [int(rate) for rate in args.rates.split(",")]
    steps: list[Step] = []
    with local_infra() as stack:
        group_env, placed = asyncio.run(placed_groups(stack.kafka_bootstrap))
        system = start_services(
            stack,
            Path(tempfile.mkdtemp(prefix="cp-pipeline-")),
            Credentials(),
            say=say,
            extra_env=group_env,
            preferred_ports=False,  # another stack on this machine may hold the usual ones
        )
        groups = {name: group for name, env in group_env.items() for group in env.values()}
        for name in args.nice:
            pid = system.services[name].pid
            if pid is not None:
                # An experiment, not a setting: on one shared machine, the services off
                # the checkpoints' path yield the CPU to intake and metrics; their lag and
                # catch-up are still measured and reported.
                os.setpriority(os.PRIO_PROCESS, pid, NICENESS)
        try:
            customers = uuid.uuid4().hex[:6]
            ladder: list[tuple[int | None, int, float]] = [] if args.cold else [(None, *WARM_UP)]
            ladder += [(index, rate, args.seconds) for index, rate in enumerate(rates)]
            for index, rate, seconds in ladder:
                group = f"{customers}-{'w' if index is None else index}-"
                plan = Plan(rate, seconds, customers=group)
                senders = daily_contacts(plan.records, group)
                routed = [n for n in sorted(set(senders)) if with_route(n)]
                asyncio.run(give_contact_routes(system, group, routed))
                if not args.cold:
                    asyncio.run(analyze(stack.database_url))
                if index is None:
                    say(f"warm-up (not reported): {rate} contacts/s for {seconds:.0f} s…")
                else:
                    say(f"step {index + 1}/{len(rates)}: {rate} contacts/s for {seconds:.0f} s…")
                step = asyncio.run(
                    measure_step(
                        system,
                        plan,
                        senders,
                        trace=args.trace,
                        sampler=cpu_sampler(system),
                        groups=groups,
                        placed=placed,
                        statements=args.statements,
                    )
                )
                say(
                    f"  counted {step.counted}/{step.records}, {step.never_seen} checkpoints never"
                    f" seen, achieved {step.achieved:.0f}/s, p50 {step.latency.p50_ms:.0f} ms,"
                    f" p99 {step.latency.p99_ms:.0f} ms ({step.latency.count} samples),"
                    f" {len(set(senders))} customers; groups' lag then {step.lag_at_end},"
                    f" at the end after {step.caught_up_s} s"
                )
                if index is None:
                    continue
                steps.append(step)
                if not step.complete:
                    say("  not everything was counted: higher rates would not be either; stopping")
                    break
            memory = {name: p.resident_memory_bytes() for name, p in system.services.items()}
            feedback = feedback_work(system)
            say(f"feedback's own counters: {feedback}")
        finally:
            system.stop()
        say("measuring the raw broker with ProducerPerformance…")
        raw_rate = broker_rate(stack.kafka_bootstrap, args.perf_records)
    print(report(steps, memory, raw_rate))
    sustained = max((s.rate for s in steps if s.sustained), default=0)
    print_summary(
        "pipeline",
        {
            "seconds_per_step": args.seconds,
            "nice": args.nice,
            "cold": args.cold,
            "steps": [
                {
                    **{k: v for k, v in asdict(s).items() if k not in ("latency", "cpu")},
                    "cpu_seconds": s.cpu.seconds if s.cpu else None,
                    "cpu_ms_per_contact": {
                        role: round(ms, 3) for role, ms in s.cpu_ms_per_contact().items()
                    },
                    "load_average": s.cpu.load_average if s.cpu else None,
                    "achieved": round(s.achieved, 1),
                    "latency": asdict(s.latency),
                    "complete": s.complete,
                    "sustained": s.sustained,
                }
                for s in steps
            ],
            "sustained_rate": sustained,
            "memory_bytes": memory,
            "feedback": feedback,
            "raw_broker_rate": round(raw_rate, 1),
            "sustained_over_raw": round(sustained / raw_rate, 5),
            "target_ratio": 0.015,
            "passed": all(s.complete for s in steps) and bool(steps),
        },
    )
    return 0 if steps and all(s.complete for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
