"""The simulated case-management system: it acts on complaints once they exist.

A real case manager learns of a complaint from `ComplaintOpened` (which
carries the complaint id) and only then acknowledges, responds, escalates.
Sending the actions straight after the contact would race intake and the
complaints service, and be refused as `unknown_complaint`; so each
complaint's planned actions wait here until its `ComplaintOpened` is seen.
"""

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from civicpulse.simulation.plan import Outgoing
from shared.kafka import Kafka, kafka_client_options, stop_consumer, topic_partitions
from shared.topics import COMPLAINT_ACTIONS, COMPLAINTS


class CaseManager:
    """Holds case actions by complaint id; sends them when the complaint is opened."""

    def __init__(
        self,
        kafka: Kafka,
        actions: Iterable[Outgoing],
        *,
        on_sent: Callable[[Outgoing], None] | None = None,
    ) -> None:
        self._kafka = kafka
        self._on_sent = on_sent
        self._waiting: dict[str, list[Outgoing]] = defaultdict(list)
        for item in actions:
            self._waiting[item.key].append(item)
        self.sent = 0
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def waiting(self) -> int:
        return sum(len(actions) for actions in self._waiting.values())

    async def start(self) -> None:
        """Start watching `civicpulse.complaints` from its current end (before any contact)."""
        consumer = AIOKafkaConsumer(**kafka_client_options(self._kafka), enable_auto_commit=False)
        await consumer.start()
        assigned = await topic_partitions(consumer, [COMPLAINTS.name])
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for partition in assigned:
            await consumer.position(partition)  # pin "the end" now, not at the first fetch
        self._consumer = consumer

    async def run(
        self, producer: AIOKafkaProducer, contacts_sent: asyncio.Event, *, grace_seconds: float
    ) -> None:
        """Send actions as their complaints open, until none wait or the grace after the
        last contact is over (a complaint that never opened keeps its actions)."""
        assert self._consumer is not None, "start() first"
        loop = asyncio.get_running_loop()
        give_up_at: float | None = None
        try:
            while self._waiting:
                if contacts_sent.is_set():
                    give_up_at = give_up_at or loop.time() + grace_seconds
                    if loop.time() > give_up_at:
                        break
                batches = await self._consumer.getmany(timeout_ms=200)
                for record in (r for batch in batches.values() for r in batch):
                    await self._on_event(producer, record.value or b"")
        finally:
            await stop_consumer(self._consumer)

    async def _on_event(self, producer: AIOKafkaProducer, value: bytes) -> None:
        try:
            event = json.loads(value)
        except ValueError:
            return
        if event.get("event_type") != "ComplaintOpened":
            return
        actions = self._waiting.pop(event.get("complaint_id", ""), [])
        for item in actions:
            await producer.send_and_wait(
                COMPLAINT_ACTIONS.name, json.dumps(item.body).encode(), key=item.key.encode()
            )
            self.sent += 1
            if self._on_sent is not None:
                self._on_sent(item)
