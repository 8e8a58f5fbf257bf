"""Intake's raw-topic throughput beside a plain aiokafka loop, on the real broker.

Both paths read the same JSON contact records from Kafka and write one record per
input back to Kafka, in batches of up to 500, committing once per batch:

- plain loop: aiokafka only. Consume from a fresh topic, `json.loads`/`json.dumps`,
  produce keyed by contact_id to a second fresh topic (futures gathered per batch),
  commit. This is the ceiling for a Python consume-transform-produce loop here. Its
  producer and consumer take the services' own client settings
  (`shared.kafka.ClientTuning`), so the ratio measures intake's code, not its settings.
- intake: the real service in-process (`create_app` and its lifespan), reading
  `civicpulse.contacts.raw` with a fresh consumer group placed at this run's records,
  validating, deduplicating in a fresh PostgreSQL database and publishing canonical
  events to `civicpulse.contacts`.

The records are produced before each timed phase (that rate is shown too, as an anchor)
and each consumer group's offsets are committed at its records' start. Timing runs from
the consumer's start, group join included, until all N are handled: plain, once the
output topic's end offsets add up to N; intake, once its outcome counters reach N and
its group has committed past the run's last record. Intake's database must then hold
exactly the run's N records.

    python -m bench.intake_throughput --records 50000 --runs 3 --json

`--batch-records N` gives both paths the same batch size (default 500, intake's
`CIVICPULSE_INTAKE_MAX_BATCH`): bigger batches spread each batch's fixed costs (the
offset commit, the key transaction) over more records, in both paths alike, so the
ratio still measures code, not settings.

`--tuning SPEC` (repeatable) runs both paths again with client settings changed, e.g.
`--tuning default --tuning batch_bytes=16384 --tuning compression=none`: every tuning
in every run, in turn, so each setting's effect is measured in one run.

Uses `CIVICPULSE_KAFKA_BOOTSTRAP` and `CIVICPULSE_DATABASE_URL` if both are set, else
starts a throwaway local stack with `civicpulse.infra` and stops it afterwards.
Side effects on a shared stack: this run's records stay on `civicpulse.contacts.raw`
(14-day retention) and their events on `civicpulse.contacts` (kept forever); every id
starts with `bench-<run id>-`. While it runs, the benchmark's intake also handles
whatever others publish to the raw topic (publishing their events or dead letters a
second time), so do not run it beside integration tests on the same stack. The scratch
topics and database are deleted; the empty consumer groups expire with Kafka's offsets.
"""

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import functools
import json
import logging
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from bench.cpu_sampler import CpuSampler
from bench.support import (
    BenchError,
    Endpoints,
    Offsets,
    admin_client,
    end_offsets,
    infrastructure,
    place_group,
    print_summary,
    say,
)
from civicpulse.infra import scratch_database
from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.api_keys import hash_api_key
from shared.kafka import ClientTuning, ensure_topics
from shared.operational import tune_garbage_collector
from shared.topics import ALL_TOPICS, CONTACTS_RAW

TARGET_RATIO = 0.8  # issue 15
BATCH_RECORDS = 500  # intake's default `intake_max_batch`
BATCH_TIMEOUT_MS = 100  # as in `shared.kafka.batch_consumer_options`
TUNABLE = tuple(field.name for field in dataclasses.fields(ClientTuning))
PRODUCE_CHUNK = 5000  # sends in flight while pre-producing
PROGRESS_EVERY_S = 2.0
POLL_S = 0.02  # polls near the end: the figures' resolution
# Polls before the last tenth: each reads intake's counters, which costs intake time.
EARLY_POLL_S = 0.1
STALL_AFTER_S = 60.0  # no progress for this long: give up
SCRATCH_PARTITIONS = CONTACTS_RAW.partitions
IDENTIFIER_MAX = 128  # `shared.events.vocabulary.Identifier`

KeyedRecord = tuple[bytes, bytes]  # (key, value)


@dataclass(frozen=True, slots=True)
class Variant:
    """Client settings both paths run with: the services' own, or some changed."""

    label: str
    tuning: ClientTuning


@dataclass(frozen=True, slots=True)
class Options:
    records: int
    record_bytes: int
    runs: int
    json: bool
    profile: Path | None
    variants: tuple[Variant, ...]
    batch_records: int = BATCH_RECORDS
    # With `--sample FILE`: both paths' timed phases, sampled on CPU time.
    sampler: CpuSampler | None = None
    sample: Path | None = None


@dataclass(frozen=True, slots=True)
class Measurement:
    records: int
    seconds: float
    # CPU this process spent meanwhile: steadier than `seconds` on a shared machine.
    cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RunResult:
    produce: Measurement
    plain: Measurement
    intake: Measurement
    variant: str = "default"

    @property
    def ratio(self) -> float:
        return self.intake.rate / self.plain.rate if self.plain.rate > 0 else 0.0

    @property
    def cpu_ratio(self) -> float:
        """Plain's CPU per record over intake's: the ratio a machine to itself would give."""
        return self.plain.cpu_seconds / self.intake.cpu_seconds if self.intake.cpu_seconds else 0.0


@dataclass(slots=True)
class Progress:
    done: int = 0


@dataclass(slots=True)
class Clock:
    started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=time.process_time)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def measurement(self, records: int) -> Measurement:
        return Measurement(records, self.elapsed(), time.process_time() - self.cpu_started)


# -- command line --------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def variant(text: str) -> Variant:
    """`default`, or `name=value[,name=value]` over the services' `ClientTuning`."""
    if text == "default":
        return Variant(text, ClientTuning())
    changes: dict[str, Any] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name not in TUNABLE or not value:
            raise argparse.ArgumentTypeError(f"{item!r}: give name=value, name one of {TUNABLE}")
        changes[name] = value if name == "compression" else int(value)
    return Variant(text, dataclasses.replace(ClientTuning(), **changes))


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.intake_throughput",
        description="Measure intake's raw-topic throughput against a plain aiokafka "
        f"consume-transform-produce loop on the real broker (target: intake/plain >= "
        f"{TARGET_RATIO}).",
    )
    parser.add_argument(
        "--records", type=positive_int, default=50_000, help="records per phase (50000)"
    )
    parser.add_argument(
        "--record-bytes",
        type=positive_int,
        default=400,
        help="approximate size of one raw JSON record; the schema has no free-text field, "
        "so identifiers are padded, which allows about 350 to 600 bytes (400)",
    )
    parser.add_argument("--runs", type=positive_int, default=1, help="repetitions (1)")
    parser.add_argument(
        "--batch-records",
        type=positive_int,
        default=BATCH_RECORDS,
        help=f"records per batch, the same in both paths ({BATCH_RECORDS}, intake's default)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="(the JSON line is always printed)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="write cProfile stats of the first intake phase to FILE (slows intake down)",
    )
    parser.add_argument(
        "--sample",
        type=Path,
        metavar="FILE",
        help="sample both paths' timed phases on CPU time (bench.cpu_sampler) and write "
        "each one's functions by CPU per record to FILE",
    )
    parser.add_argument(
        "--tuning",
        type=variant,
        action="append",
        metavar="SPEC",
        help="client settings to run both paths with, repeatable, each in every run: "
        "`default` (shared.kafka.ClientTuning, what the services run with) or changes to it "
        "such as `linger_ms=0`, `batch_bytes=16384`, `compression=none` (default: default)",
    )
    args = parser.parse_args(argv)
    variants = tuple(args.tuning or [Variant("default", ClientTuning())])
    return Options(
        args.records,
        args.record_bytes,
        args.runs,
        args.json,
        args.profile,
        variants,
        args.batch_records,
        CpuSampler() if args.sample else None,
        args.sample,
    )


def sampled(options: Options, phase: str) -> contextlib.AbstractContextManager[None]:
    if options.sampler is None:
        return contextlib.nullcontext()
    return options.sampler.phase(phase, records=options.records)


# -- infrastructure -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def scratch_topics(bootstrap: str, names: Sequence[str]) -> AsyncIterator[Offsets]:
    """Fresh topics with as many partitions as the raw topic; deleted on exit.

    Yields their (zero) end offsets once every partition's leader serves.
    """
    async with admin_client(bootstrap) as admin:
        await admin.create_topics(
            [NewTopic(name, SCRATCH_PARTITIONS, replication_factor=1) for name in names]
        )
        try:
            yield await end_offsets(bootstrap, names)
        finally:
            await admin.delete_topics(list(names))


# -- Kafka helpers --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def producer(
    bootstrap: str, tuning: ClientTuning | None = None
) -> AsyncIterator[AIOKafkaProducer]:
    """An idempotent producer (acks=all) with the services' client settings, or (to
    pre-produce, as some other council system would) aiokafka's own but a 5 ms linger."""
    options = tuning.producer_options() if tuning else {"enable_idempotence": True, "linger_ms": 5}
    client = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="civicpulse-bench", **options)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@contextlib.asynccontextmanager
async def consumer(bootstrap: str, *topics: str, **config: Any) -> AsyncIterator[AIOKafkaConsumer]:
    client = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, enable_auto_commit=False, **config
    )
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def group_reached(admin: AIOKafkaAdminClient, group_id: str, target: Offsets) -> bool:
    """Whether the group has committed at least `target` on every partition."""
    committed = await admin.list_consumer_group_offsets(group_id, partitions=list(target))
    return all(tp in committed and committed[tp].offset >= offset for tp, offset in target.items())


async def produce_all(bootstrap: str, topic: str, records: Sequence[KeyedRecord]) -> Measurement:
    """Produce every record and wait for the broker to have all of them."""
    clock = Clock()
    async with producer(bootstrap) as client:
        for start in range(0, len(records), PRODUCE_CHUNK):
            chunk = records[start : start + PRODUCE_CHUNK]
            futures = [await client.send(topic, value, key=key) for key, value in chunk]
            await asyncio.gather(*futures)
    return clock.measurement(len(records))


async def watch(
    label: str,
    done: Callable[[], int],
    total: int,
    clock: Clock,
    *,
    until: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """Wait until `done()` reaches `total` (and `until()` holds), reporting progress."""
    last_done, last_change, last_report = -1, clock.elapsed(), 0.0
    while True:
        count = done()
        if count >= total and (until is None or await until()):
            return
        now = clock.elapsed()
        if count != last_done:
            last_done, last_change = count, now
        elif now - last_change > STALL_AFTER_S:
            raise BenchError(f"{label}: stuck at {count}/{total} for {STALL_AFTER_S:.0f} s")
        if now - last_report >= PROGRESS_EVERY_S:
            last_report = now
            say(f"{label}: {count}/{total} after {now:.1f} s ({count / now:,.0f} records/s)")
        await asyncio.sleep(POLL_S if count >= 0.9 * total else EARLY_POLL_S)


# -- records --------------------------------------------------------------------------


def contact_record(contact_id: str, padding: str) -> dict[str, Any]:
    """A valid raw `contact_received` record (as in tests/integration/test_intake.py)."""
    record: dict[str, Any] = {
        "record_type": "contact_received",
        "idempotency_key": f"key-{contact_id}",
        "source": "bench",
        "contact_id": contact_id,
        "occurred_at": "2026-01-12T09:30:00+00:00",
        "channel": "Phone",
        "service_area": "planning",
        "kind": "enquiry",
        "customer_ref": "CUST-1",
        "answered_by_team": "planning",
        "wait_seconds": 42,
    }
    if padding:
        # The schema forbids extra fields: grow the identifiers instead.
        key_room = IDENTIFIER_MAX - len(record["idempotency_key"]) - 1
        record["idempotency_key"] += "." + padding[:key_room]
        if rest := padding[key_room:]:
            record["correlation_id"] = ("c." + rest)[:IDENTIFIER_MAX]
    return record


def make_records(prefix: str, count: int, record_bytes: int) -> list[KeyedRecord]:
    """`count` distinct records, keyed by contact_id, of about `record_bytes` each."""
    natural = len(json.dumps(contact_record(f"{prefix}-{0:07d}", "")))
    padding = "x" * max(0, record_bytes - natural)
    records = []
    for index in range(count):
        contact_id = f"{prefix}-{index:07d}"
        value = json.dumps(contact_record(contact_id, padding)).encode()
        records.append((contact_id.encode(), value))
    return records


# -- plain loop -----------------------------------------------------------------------


async def forward(
    source: AIOKafkaConsumer,
    sink: AIOKafkaProducer,
    topic: str,
    forwarded: Progress,
    total: int,
    batch_records: int = BATCH_RECORDS,
) -> None:
    """Consume, transform, produce (keyed), await the sends, commit; batch by batch."""
    while forwarded.done < total:
        batches = await source.getmany(timeout_ms=BATCH_TIMEOUT_MS, max_records=batch_records)
        futures = []
        for records in batches.values():
            for record in records:
                document = json.loads(record.value)
                value = json.dumps(document).encode()
                key = document["contact_id"].encode()
                futures.append(await sink.send(topic, value, key=key))
        if futures:
            await asyncio.gather(*futures)
            await source.commit()
            forwarded.done += len(futures)


async def measure_plain(
    endpoints: Endpoints, run_id: str, options: Options, tuning: ClientTuning
) -> Measurement:
    bootstrap = endpoints.kafka_bootstrap
    topic_in, topic_out = f"bench.{run_id}.plain-in", f"bench.{run_id}.plain-out"
    records = make_records(f"bench-{run_id}-plain", options.records, options.record_bytes)
    group_id = f"bench-plain-{run_id}"
    async with scratch_topics(bootstrap, [topic_in, topic_out]) as start:
        produced = await produce_all(bootstrap, topic_in, records)
        say(f"plain loop: {len(records)} records on {topic_in} ({produced.rate:,.0f} records/s)")
        # As for intake: the group's coordinator is up and its offsets set before timing.
        offsets = {tp: offset for tp, offset in start.items() if tp.topic == topic_in}
        await place_group(bootstrap, group_id, offsets)
        forwarded = Progress()
        async with (
            producer(bootstrap, tuning) as sink,
            consumer(bootstrap, topic_in, group_id=group_id, **tuning.consumer_options()) as source,
            consumer(bootstrap) as reader,
        ):
            output = [tp for tp in start if tp.topic == topic_out]

            async def all_visible() -> bool:
                visible: Offsets = await reader.end_offsets(output)
                return sum(visible.values()) >= len(records)

            clock = Clock()
            task = asyncio.create_task(
                forward(source, sink, topic_out, forwarded, len(records), options.batch_records)
            )
            try:
                with sampled(options, "plain loop"):
                    await watch_task(
                        "plain loop", task, forwarded, len(records), clock, until=all_visible
                    )
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            return clock.measurement(len(records))


async def watch_task(
    label: str,
    task: "asyncio.Task[None]",
    forwarded: Progress,
    total: int,
    clock: Clock,
    *,
    until: Callable[[], Awaitable[bool]],
) -> None:
    """`watch`, but fail at once if the worker task dies."""

    def done() -> int:
        if task.done() and task.exception() is not None:
            raise BenchError(f"{label} failed") from task.exception()
        return forwarded.done

    await watch(label, done, total, clock, until=until)


# -- intake ---------------------------------------------------------------------------


INTAKE_OUTCOMES = (
    "intake_records_accepted_total",
    "intake_records_dead_lettered_total",
    "intake_records_duplicate_total",
)


def handled_counter(registry: CollectorRegistry) -> Callable[[], int]:
    """Raw records intake is done with so far: accepted, dead-lettered or duplicate.

    Reads only intake's own counters: collecting the whole registry (faststream's
    histograms included) on every poll would steal measurable time from intake.
    """
    view = registry.restricted_registry(INTAKE_OUTCOMES)

    def handled() -> int:
        return int(
            sum(
                item.value
                for metric in view.collect()
                for item in metric.samples
                if item.name in INTAKE_OUTCOMES
            )
        )

    return handled


async def accepted_in_database(database_url: str, contact_prefix: str) -> int:
    """This run's records in intake's idempotency table: each was published once."""
    connection = await asyncpg.connect(database_url)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM intake_accepted_records WHERE idempotency_key LIKE $1",
            f"key-{contact_prefix}-%",
        )
    finally:
        await connection.close()
    return int(count)


@contextlib.contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(path)
        say(f"intake profile written to {path} (python -m pstats {path})")


def intake_settings(
    bootstrap: str,
    database_url: str,
    group_id: str,
    tuning: ClientTuning,
    batch_records: int = BATCH_RECORDS,
) -> IntakeSettings:
    if dataclasses.replace(ClientTuning(), **intake_tunable(tuning)) != tuning:
        raise BenchError("intake takes only linger_ms, batch_bytes and compression as settings")
    return IntakeSettings(
        kafka_bootstrap=bootstrap,
        database_url=database_url,
        intake_group_id=group_id,
        intake_max_batch=batch_records,
        intake_api_keys={"bench": hash_api_key(uuid.uuid4().hex)},  # HTTP is not used
        **{f"kafka_{name}": value for name, value in intake_tunable(tuning).items()},
    )


def intake_tunable(tuning: ClientTuning) -> dict[str, Any]:
    """The client settings a service takes from `CIVICPULSE_KAFKA_*`."""
    return {
        "linger_ms": tuning.linger_ms,
        "batch_bytes": tuning.batch_bytes,
        "compression": tuning.compression,
    }


async def measure_intake(
    endpoints: Endpoints, run_id: str, options: Options, profile: Path | None, tuning: ClientTuning
) -> tuple[Measurement, Measurement]:
    """(pre-produce, intake) measurements for one run.

    Intake reads the shared raw topic, so it also handles whatever others publish
    there meanwhile. Done means the group committed past this run's last record;
    the run's own records are then counted in intake's database.
    """
    bootstrap = endpoints.kafka_bootstrap
    await ensure_topics(bootstrap, ALL_TOPICS)
    prefix = f"bench-{run_id}-intake"
    records = make_records(prefix, options.records, options.record_bytes)
    start = await end_offsets(bootstrap, [CONTACTS_RAW.name])
    produced = await produce_all(bootstrap, CONTACTS_RAW.name, records)
    say(f"intake: {len(records)} records on {CONTACTS_RAW.name} ({produced.rate:,.0f} records/s)")
    target = await end_offsets(bootstrap, [CONTACTS_RAW.name])
    group_id = f"bench-intake-{run_id}"
    await place_group(bootstrap, group_id, start)
    async with (
        scratch_database(endpoints.database_url, f"bench_{run_id}") as database_url,
        admin_client(bootstrap) as admin,
    ):
        registry = CollectorRegistry()
        settings = intake_settings(bootstrap, database_url, group_id, tuning, options.batch_records)
        app = create_app(settings, registry=registry)
        handled = handled_counter(registry)
        async with app.router.lifespan_context(app):
            clock = Clock()
            with profiled(profile), sampled(options, "intake"):
                await watch(
                    "intake",
                    handled,
                    len(records),
                    clock,
                    until=functools.partial(group_reached, admin, group_id, target),
                )
            measured = clock.measurement(len(records))
        say("intake stopped")
        accepted = await accepted_in_database(database_url, prefix)
    if accepted != len(records):
        raise BenchError(f"intake accepted {accepted} of the {len(records)} benchmark records")
    if (others := handled() - len(records)) > 0:
        say(f"intake also handled {others} record(s) others published to {CONTACTS_RAW.name}")
    return produced, measured


# -- the whole run --------------------------------------------------------------------


async def run_once(
    endpoints: Endpoints, options: Options, index: int, variant: Variant
) -> RunResult:
    run_id = uuid.uuid4().hex[:12]
    say(
        f"run {index + 1}/{options.runs} (id {run_id}), tuning {variant.label}: "
        f"{options.records} records each"
    )
    plain = await measure_plain(endpoints, run_id, options, variant.tuning)
    say(f"plain loop: {plain.records} in {plain.seconds:.2f} s = {plain.rate:,.0f} records/s")
    profile = options.profile if index == 0 and variant is options.variants[0] else None
    produce, intake = await measure_intake(endpoints, run_id, options, profile, variant.tuning)
    say(f"intake: {intake.records} in {intake.seconds:.2f} s = {intake.rate:,.0f} records/s")
    return RunResult(produce, plain, intake, variant.label)


async def bench(endpoints: Endpoints, options: Options) -> list[RunResult]:
    """Every variant in every run, in turn, so slow spells on the machine hit them alike."""
    probe = make_records(f"bench-{'0' * 12}-intake", 1, options.record_bytes)
    say(f"records of {len(probe[0][1])} bytes (asked for ~{options.record_bytes})")
    return [
        await run_once(endpoints, options, index, variant)
        for index in range(options.runs)
        for variant in options.variants
    ]


def median_result(results: Sequence[RunResult]) -> RunResult:
    def median(pick: Callable[[RunResult], Measurement]) -> Measurement:
        seconds = statistics.median(pick(result).seconds for result in results)
        cpu_seconds = statistics.median(pick(result).cpu_seconds for result in results)
        return Measurement(pick(results[0]).records, seconds, cpu_seconds)

    return RunResult(
        median(lambda r: r.produce),
        median(lambda r: r.plain),
        median(lambda r: r.intake),
        results[0].variant,
    )


def median_ratio(results: Sequence[RunResult]) -> float:
    """Each run's phases ran minutes apart at most: its own ratio cancels slow spells best."""
    return statistics.median(result.ratio for result in results)


def by_variant(results: Sequence[RunResult]) -> dict[str, list[RunResult]]:
    grouped: dict[str, list[RunResult]] = {}
    for result in results:
        grouped.setdefault(result.variant, []).append(result)
    return grouped


def table(results: Sequence[RunResult]) -> str:
    grouped = by_variant(results)
    rows = [("tuning", "run", "path", "records", "seconds", "records/s", "CPU us/record")]
    for name, runs in grouped.items():
        labelled = [(str(i + 1), result) for i, result in enumerate(runs)]
        if len(runs) > 1:
            labelled.append(("median", median_result(runs)))
        for label, result in labelled:
            for path, measurement in (
                ("produce only", result.produce),
                ("plain loop", result.plain),
                ("intake", result.intake),
            ):
                rows.append(
                    (
                        name,
                        label,
                        path,
                        str(measurement.records),
                        f"{measurement.seconds:.2f}",
                        f"{measurement.rate:,.0f}",
                        f"{1e6 * measurement.cpu_seconds / measurement.records:,.0f}",
                    )
                )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    for name, runs in grouped.items():
        ratio = median_ratio(runs)
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        label = "intake/plain" if len(runs) == 1 else "intake/plain (median of the runs' ratios)"
        cpu = statistics.median(result.cpu_ratio for result in runs)
        lines.append(
            f"{name}: {label}: {ratio:.2f} (target >= {TARGET_RATIO}: {verdict}); "
            f"CPU per record, plain/intake: {cpu:.2f}"
        )
    return "\n".join(lines)


def figures(options: Options, results: Sequence[RunResult]) -> dict[str, Any]:
    def describe(result: RunResult) -> dict[str, Any]:
        return {
            name: {**asdict(measurement), "rate": round(measurement.rate, 1)}
            for name, measurement in (
                ("produce", result.produce),
                ("plain", result.plain),
                ("intake", result.intake),
            )
        } | {"ratio": round(result.ratio, 3), "tuning": result.variant}

    def median(runs: Sequence[RunResult]) -> dict[str, Any]:
        return describe(median_result(runs)) | {"ratio": round(median_ratio(runs), 3)}

    grouped = by_variant(results)
    return {
        "records": options.records,
        "record_bytes": options.record_bytes,
        "batch_records": options.batch_records,
        "target_ratio": TARGET_RATIO,
        "runs": [describe(result) for result in results],
        # The first tuning's (the services' own unless --tuning says otherwise).
        "median": median(grouped[options.variants[0].label]),
        "tunings": {name: median(runs) for name, runs in grouped.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # As `python -m services.intake` runs; the plain loop shares the process, and so the setting.
    tune_garbage_collector()
    try:
        with infrastructure() as endpoints:
            results = asyncio.run(bench(endpoints, options))
    except BenchError as error:
        say(f"failed: {error}")
        return 1
    print(table(results))
    if options.sampler is not None and options.sample is not None:
        options.sampler.write(
            options.sample,
            {
                "plain loop": mean_cpu_per_record([result.plain for result in results]),
                "intake": mean_cpu_per_record([result.intake for result in results]),
            },
        )
        say(f"CPU samples by function written to {options.sample}")
    print_summary("intake_throughput", figures(options, results))
    return 0


def mean_cpu_per_record(measurements: Sequence[Measurement]) -> float:
    return sum(m.cpu_seconds for m in measurements) / sum(m.records for m in measurements)


if __name__ == "__main__":
    sys.exit(main())
