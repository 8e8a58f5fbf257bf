"""Rebuild by replay: recompute every aggregate from the start of the canonical topics.

The replay fills a new generation of the tables (its own processed-event
records too) while the live service keeps serving the current one. Once it
has read up to where the topics ended when it started, readers and the live
consumer switch to the new generation in one transaction; the replay then
reads on to where the topics ended at the switch, so that every event before
the switch is in the new generation and every event after it is applied there
by the live consumer (events applied by both count once: per-generation
processed-event records).

Until the switch no one else reads or writes the new generation, so the replay
carries the batches' counter increments in memory and writes them once per many
batches (at most `CARRY_CELLS` counters held, about 90 MB) and before the switch;
from the switch on, each batch writes its own, as the live consumer does. A crash
before the switch leaves the generation unfinished, and the next rebuild drops it.

The replay assigns every partition to itself and commits nothing (it is not a
consumer group member): it always starts from the beginning, and an
interrupted rebuild is discarded by the next one.
"""

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError
from tqdm import tqdm

from services.metrics.applier import BatchApplier, Totals
from services.metrics.store import MetricsStore
from shared.event_decoding import event_from
from shared.events import Event
from shared.kafka import Kafka, kafka_client_options, stop_consumer, topic_partitions
from shared.topics import CANONICAL_TOPICS, TopicSpec

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
REPORT_EVERY_S = 2.0
# Distinct (cell, measure) counters a replay carries before writing them (about 90 MB at
# most): a year of 15 areas and 6 channels, at the few measures each cell has, is of
# that order (365 x 15 x 6 x 5 = 164,250), so a year's replay writes them once or twice.
CARRY_CELLS = 250_000
READ_AHEAD = 2  # parsed batches waiting to be applied, beside the one being applied
GC_THRESHOLD = 100_000  # allocations between collections of the youngest generation
PARSE_SLICE = 1_000  # records parsed between chances for the batch being applied to go on


@dataclass(frozen=True, slots=True)
class RebuildResult:
    generation: int
    previous_generation: int
    events_read: int
    events_applied: int
    records_skipped: int
    seconds: float


class Replay:
    """Reads assigned partitions and applies each batch to one generation, in one transaction."""

    def __init__(
        self,
        store: MetricsStore,
        consumer: AIOKafkaConsumer,
        applier: BatchApplier,
        generation: int,
        progress: Progress,
    ) -> None:
        self._store = store
        self._consumer = consumer
        self._applier = applier
        self._generation = generation
        self._progress = progress
        self._started = time.monotonic()
        self.read = 0
        self.applied = 0
        self.skipped = 0
        self._carried: Totals | None = None  # counter increments not written yet

    async def _remaining(self, targets: Mapping[TopicPartition, int]) -> int:
        remaining = 0
        for partition, end in targets.items():
            remaining += max(0, end - await self._consumer.position(partition))
        return remaining

    async def until(
        self, targets: Mapping[TopicPartition, int], *, batch: int, carry: bool = False
    ) -> None:
        """Apply everything before `targets` (end offsets per partition).

        `carry`: the counters are written every `CARRY_CELLS` counters and at the end,
        not per batch (only while the generation is not live).
        On a terminal, a progress bar shows events/s and the time left; elsewhere
        (logs, pipes) a line every few seconds says the same.
        """
        self._carried = {} if carry else None
        remaining = await self._remaining(targets)
        bar = tqdm(
            total=remaining,
            desc=f"generation {self._generation}",
            unit=" events",
            unit_scale=True,
            smoothing=0.1,
            dynamic_ncols=True,
            disable=None,  # off unless stderr is a terminal
        )
        try:
            await self._apply_until(targets, batch, remaining, bar)
            if self._carried:
                async with self._store.transaction() as tx:
                    await self._applier.add_totals(tx, self._generation, self._carried)
        finally:
            self._carried = None
            bar.close()

    async def _apply_until(
        self, targets: Mapping[TopicPartition, int], batch: int, remaining: int, bar: "tqdm[Any]"
    ) -> None:
        """Read and parse the batches ahead while PostgreSQL applies the one in hand.

        Batches are still applied one after the other, in the order read: only the
        reading runs ahead (at most `READ_AHEAD` batches), so the replay's result is
        the same as one batch at a time. Reading ahead by more than one batch keeps
        the process busy while PostgreSQL works on a batch's statements.
        """
        ready: asyncio.Queue[tuple[list[Event], int] | None] = asyncio.Queue(READ_AHEAD)
        reader = asyncio.create_task(self._read_until(targets, batch, remaining, bar, ready))
        try:
            while (item := await _next_batch(ready, reader)) is not None:
                await self._apply(*item, bar)
            await reader
        finally:
            reader.cancel()

    async def _read_until(
        self,
        targets: Mapping[TopicPartition, int],
        batch: int,
        remaining: int,
        bar: "tqdm[Any]",
        ready: "asyncio.Queue[tuple[list[Event], int] | None]",
    ) -> None:
        last_report = time.monotonic()
        while remaining > 0:
            now = time.monotonic()
            if bar.disable and now - last_report >= REPORT_EVERY_S:
                last_report = now
                rate = self.read / max(now - self._started, 1e-9)
                self._progress(
                    f"generation {self._generation}: {self.read:,} records read,"
                    f" {remaining:,} to go ({rate:,.0f}/s,"
                    f" about {remaining / max(rate, 1e-9):,.0f} s left)"
                )
            await ready.put(await self._read(targets, batch))
            remaining = await self._remaining(targets)
        await ready.put(None)

    async def _read(
        self, targets: Mapping[TopicPartition, int], batch: int
    ) -> tuple[list[Event], int]:
        """The next records before `targets`, parsed; and how many were read.

        Parsing yields to the event loop every `PARSE_SLICE` records, so that the batch
        being applied sends its next statement as soon as PostgreSQL answers.
        """
        batches = await self._consumer.getmany(timeout_ms=500, max_records=batch)
        events: list[Event] = []
        read = 0
        for partition, records in batches.items():
            end = targets.get(partition, 0)
            for record in records:
                if record.offset >= end:
                    continue  # read on later, after the switch
                read += 1
                try:
                    events.append(event_from(record.value or b"", record.headers or ()))
                except ValidationError:
                    self.skipped += 1  # the live consumer dead-lettered it
                if read % PARSE_SLICE == 0:
                    await asyncio.sleep(0)
            if records and records[-1].offset >= end:
                self._consumer.seek(partition, end)
        self.read += read
        return events, read

    async def _apply(self, events: Sequence[Event], read: int, bar: "tqdm[Any]") -> None:
        if events:
            async with self._store.transaction() as tx:
                self.applied += await self._applier.apply(
                    tx, self._generation, events, carry=self._carried
                )
                if self._carried is not None and len(self._carried) >= CARRY_CELLS:
                    await self._applier.add_totals(tx, self._generation, self._carried)
                    self._carried.clear()
        bar.update(read)


async def _next_batch(
    ready: "asyncio.Queue[tuple[list[Event], int] | None]", reader: "asyncio.Task[None]"
) -> tuple[list[Event], int] | None:
    """The next batch read (None: all read), or the reader's error if it failed."""
    getting = asyncio.ensure_future(ready.get())
    try:
        await asyncio.wait({getting, reader}, return_when=asyncio.FIRST_COMPLETED)
        if not getting.done() and reader.done():
            reader.result()  # raises what the reader raised; if it ended, its batches are queued
        return await getting
    finally:
        getting.cancel()


async def rebuild(
    pool: asyncpg.Pool,
    kafka: Kafka,
    applier: BatchApplier,
    *,
    progress: Progress = print,
    topics: Sequence[TopicSpec] = CANONICAL_TOPICS,
    start_offsets: Mapping[TopicPartition, int] | None = None,
    batch: int = 20_000,
) -> RebuildResult:
    """Replay `topics` into a new generation and switch readers to it when caught up.

    `start_offsets` replays from those positions instead of the beginning
    (tests use it to replay only their own session on a long-lived broker).
    """
    started = time.monotonic()
    # The replay holds a few batches of parsed events at a time, and collections run
    # often while it allocates them: what exists already (modules, schemas) is
    # frozen for the while, so that they do not walk it again each time, and the
    # youngest generation is collected every `GC_THRESHOLD` allocations, not 700, so
    # that the batches held are not walked again and again as they age (with the
    # default, collecting took half the replay's time). Memory is freed by reference
    # counting as before; only cycles wait longer.
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *thresholds[1:])
    try:
        return await _rebuild(pool, kafka, applier, progress, topics, start_offsets, batch, started)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def _rebuild(
    pool: asyncpg.Pool,
    kafka: Kafka,
    applier: BatchApplier,
    progress: Progress,
    topics: Sequence[TopicSpec],
    start_offsets: Mapping[TopicPartition, int] | None,
    batch: int,
    started: float,
) -> RebuildResult:
    store = MetricsStore(pool)
    generation = await store.start_generation()
    consumer = AIOKafkaConsumer(
        **kafka_client_options(kafka),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=f"civicpulse-metrics-rebuild-g{generation}",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(
            consumer, [t.name for t in topics], attempts=50, missing_ok=True
        )
        consumer.assign(partitions)
        for partition in partitions:
            if start_offsets is not None:
                consumer.seek(partition, start_offsets.get(partition, 0))
            else:
                await consumer.seek_to_beginning(partition)
        replay = Replay(store, consumer, applier, generation, progress)
        progress(f"generation {generation}: replaying {', '.join(t.name for t in topics)}")
        await replay.until(await consumer.end_offsets(partitions), batch=batch, carry=True)
        previous = await store.switch_generation(generation)
        progress(f"generation {generation} is live (was {previous}); reading to the switch")
        await replay.until(await consumer.end_offsets(partitions), batch=batch)
        dropped = await store.drop_retired_before(previous)
        if dropped:
            progress(f"dropped retired generations {', '.join(map(str, dropped))}")
    finally:
        await stop_consumer(consumer)
    result = RebuildResult(
        generation=generation,
        previous_generation=previous,
        events_read=replay.read,
        events_applied=replay.applied,
        records_skipped=replay.skipped,
        seconds=time.monotonic() - started,
    )
    progress(
        f"rebuild done: generation {generation}, {result.events_applied:,} events applied,"
        f" {result.records_skipped:,} undecodable records skipped, {result.seconds:.1f} s"
    )
    return result
