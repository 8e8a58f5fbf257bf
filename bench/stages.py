"""Where a checkpoint's end-to-end latency goes, stage by stage (`bench.pipeline --trace`).

From timestamps the pipeline already keeps, all on the one machine's wall clock:

- published: the bench's send;
- intake recorded: the canonical event's `recorded_at`, stamped when intake
  built it from the raw record (so: raw topic wait, fetch, decode);
- intake sent: the `civicpulse.contacts` record's timestamp, stamped by intake's
  producer at `send` (so: intake's idempotency transaction and the rest of its batch);
- metrics applying: `processed_events.processed_at` of the event in the metrics
  generation, which is `now()`, the start of the batch's transaction (so: the
  contacts topic wait, metrics' fetch, decode and the batches before it);
- seen counted: the bench's poll that first found the checkpoint's contact fact row
  (so: the rest of metrics' transaction, its commit, and the poll's own period).
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer

from bench.support import Offsets, Percentiles, end_offsets, percentiles
from shared.topics import CONTACTS

STAGES = (
    "published → intake recorded",
    "intake recorded → intake sent",
    "intake sent → metrics applying",
    "metrics applying → seen counted",
)


@dataclass(frozen=True, slots=True)
class Stamps:
    event_id: str
    recorded_at: float
    sent_at: float


async def contacts_end(bootstrap: str) -> Offsets:
    return await end_offsets(bootstrap, [CONTACTS.name])


async def canonical_stamps(bootstrap: str, since: Offsets, contacts: set[str]) -> dict[str, Stamps]:
    """The canonical event of each of these contact ids, read from `since` to the end."""
    until = await end_offsets(bootstrap, [CONTACTS.name])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, Stamps] = {}
    try:
        consumer.assign(list(until))
        for partition, offset in since.items():
            consumer.seek(partition, offset)
        remaining = {p for p, end in until.items() if end > since.get(p, 0)}
        while remaining:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for partition, records in batches.items():
                for record in records:
                    if record.offset + 1 >= until[partition]:
                        remaining.discard(partition)
                    event = json.loads(record.value or b"{}")
                    contact = event.get("contact_id")
                    if contact in contacts and contact not in found:
                        found[contact] = Stamps(
                            event_id=event["event_id"],
                            recorded_at=datetime.fromisoformat(event["recorded_at"]).timestamp(),
                            sent_at=record.timestamp / 1000,
                        )
    finally:
        await consumer.stop()
    return found


async def applied_at(database_url: str, event_ids: list[str]) -> dict[str, float]:
    """When metrics' live batch that applied each event began (its transaction's now())."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT event_id::text AS id, min(processed_at) AS at FROM processed_events"
            " WHERE service LIKE 'metrics@%' AND event_id = ANY($1::uuid[]) GROUP BY event_id",
            event_ids,
        )
    finally:
        await connection.close()
    return {row["id"]: row["at"].timestamp() for row in rows}


async def trace_stages(
    bootstrap: str,
    database_url: str,
    since: Offsets,
    published: Mapping[str, float],
    seen: Mapping[str, float],
) -> dict[str, Percentiles]:
    """Each stage's p50/p99 over the checkpoints (by contact id) that were seen counted."""
    stamps = await canonical_stamps(bootstrap, since, set(published))
    applied = await applied_at(database_url, [s.event_id for s in stamps.values()])
    durations: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for contact, published_at in published.items():
        stamp = stamps.get(contact)
        if stamp is None or contact not in seen or stamp.event_id not in applied:
            continue
        points = [
            published_at,
            stamp.recorded_at,
            stamp.sent_at,
            applied[stamp.event_id],
            seen[contact],
        ]
        for stage, began, ended in zip(STAGES, points, points[1:], strict=False):
            durations[stage].append(ended - began)
    return {stage: percentiles(values) for stage, values in durations.items()}
