"""Consumer lag: records on the input topics that the service's group has not consumed yet."""

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.topics import TopicSpec


class ConsumerLag:
    """Committed offsets of one group against the topics' ends; `start()` before `measure()`."""

    def __init__(self, bootstrap: str, group_id: str, topics: Sequence[TopicSpec]) -> None:
        self._group_id = group_id
        self._partitions = {
            topic.name: [TopicPartition(topic.name, p) for p in range(topic.partitions)]
            for topic in topics
        }
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="complaints-lag")
        # No group: this consumer only asks for end offsets.
        self._ends = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def start(self) -> None:
        await self._admin.start()
        await self._ends.start()

    async def stop(self) -> None:
        await self._ends.stop()
        await self._admin.close()

    async def measure(self) -> dict[str, int]:
        """Lag per topic; a partition the group never committed counts from offset 0."""
        committed = await self._admin.list_consumer_group_offsets(self._group_id)
        lag: dict[str, int] = {}
        for topic, partitions in self._partitions.items():
            ends = await self._ends.end_offsets(partitions)
            lag[topic] = sum(
                max(0, ends[p] - max(0, committed[p].offset if p in committed else 0))
                for p in partitions
            )
        return lag
