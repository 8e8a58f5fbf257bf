"""Consumer lag: how far a consumer group is behind the end of its topics."""

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry, Gauge

from shared.kafka import Kafka, kafka_client_options, stop_consumer, topic_partitions


def consumer_lag_gauge(service: str, registry: CollectorRegistry) -> Gauge:
    """`<service>_consumer_lag_records{topic}`: one name pattern for every service's lag."""
    return Gauge(
        f"{service}_consumer_lag_records",
        "Records on each input topic not yet consumed by the service's group.",
        ["topic"],
        registry=registry,
    )


class KafkaPositions:
    """End offsets and a consumer group's committed offsets, per topic."""

    def __init__(self, kafka: Kafka) -> None:
        self._kafka = kafka
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._admin = AIOKafkaAdminClient(
            **kafka_client_options(self._kafka), client_id="civicpulse-lag"
        )
        await self._admin.start()
        self._consumer = AIOKafkaConsumer(
            **kafka_client_options(self._kafka), enable_auto_commit=False
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer:
            await stop_consumer(self._consumer)
        if self._admin:
            await self._admin.close()

    async def end_offsets(self, topics: list[str]) -> dict[str, dict[int, int]]:
        assert self._consumer is not None
        # One refresh at most: gauges are read often, and a missing topic reads as empty.
        partitions = await topic_partitions(self._consumer, topics, attempts=1, missing_ok=True)
        ends = await self._consumer.end_offsets(partitions) if partitions else {}
        result: dict[str, dict[int, int]] = {topic: {} for topic in topics}
        for partition, offset in ends.items():
            result[partition.topic][partition.partition] = offset
        return result

    async def lag(self, group_id: str, topics: list[str]) -> dict[str, int]:
        assert self._admin is not None
        committed = await self._admin.list_consumer_group_offsets(group_id)
        ends = await self.end_offsets(topics)
        lag: dict[str, int] = {}
        for topic, partitions in ends.items():
            total = 0
            for partition, end in partitions.items():
                meta = committed.get(TopicPartition(topic, partition))
                position = meta.offset if meta is not None and meta.offset >= 0 else 0
                total += max(0, end - position)
            lag[topic] = total
        return lag
