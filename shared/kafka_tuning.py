"""The Kafka client settings every CivicPulse producer and consumer shares (`ClientTuning`).

Apart from `shared.kafka`, which uses them everywhere and is where callers import them.
"""

from dataclasses import dataclass
from typing import Any, Literal

from shared.topics import MAX_MESSAGE_BYTES

Compression = Literal["none", "gzip", "lz4", "zstd"]


@dataclass(frozen=True, slots=True)
class ClientTuning:
    """How every CivicPulse producer batches and compresses, and every consumer fetches.

    Chosen here once for all services; docs/production.md ("Kafka client
    settings") gives the measurements behind each figure. The first three are
    settings (`CIVICPULSE_KAFKA_LINGER_MS`, `_BATCH_BYTES`, `_COMPRESSION`).
    """

    # How long a producer holds a partition's batch open for more records. It is
    # paid only when traffic is light (under load batches fill or wait for the
    # one request in flight to each broker anyway): at most 5 ms a hop, against a
    # pipeline p99 budget of 1 s.
    linger_ms: int = 5
    # aiokafka buffers ONE batch per partition; when it fills, `send` waits until
    # it has gone. At Kafka's 16 KiB default, intake's batch of 500 records
    # (about 50 KiB a partition) took three round trips to the broker; 256 KiB
    # takes one. aiokafka counts this uncompressed, so a batch always fits the
    # topics' 1 MiB `max.message.bytes`, compressed or not.
    batch_bytes: int = 256 * 1024
    # "zstd" (level 3) stores the canonical topics, kept forever, in about two thirds
    # of lz4's bytes (61 against 92 B a contact event in batches of 500 across six
    # partitions, 97 against 138 in batches of 60), and its CPU is a wash: in
    # batches of 500 it saves 2.6 us a record in the producer (aiokafka runs lz4 at
    # level 9, high-compression mode, and has no level option), while a consumer
    # pays 0.3 us more; in batches of 60 the producer pays 0.4 us more and each
    # consumer 1.5 us (zstd's fixed cost a batch). Under 1 % of the pipeline's
    # ~1 ms of CPU a contact either way (docs/production.md). "gzip" costs far
    # more. lz4 and zstd need `cramjam` (aiokafka's extra, in pyproject.toml).
    compression: Compression = "zstd"
    # With fetch.min.bytes at 1 the broker answers a fetch as soon as there is
    # anything: this is only how long an idle long poll lasts, never a delay.
    fetch_max_wait_ms: int = 500
    # Per partition and per fetch: a whole record batch of the largest size a
    # topic takes, and about 2,500 raw records, five batches of 500 buffered.
    max_partition_fetch_bytes: int = MAX_MESSAGE_BYTES
    # Per fetch response: enough for 16 partitions' worth at once (a consumer of
    # three six-partition topics), where aiokafka's 50 MiB would let a lagging
    # consumer buffer far more than it can handle in a poll interval.
    fetch_max_bytes: int = 16 * MAX_MESSAGE_BYTES

    def producer_options(self) -> dict[str, Any]:
        """aiokafka (and faststream) producer keyword arguments."""
        return {
            "enable_idempotence": True,  # implies acks="all"; no duplicates on retry
            "linger_ms": self.linger_ms,
            "max_batch_size": min(self.batch_bytes, MAX_MESSAGE_BYTES),
            # One record up to the topics' limit still travels alone.
            "max_request_size": MAX_MESSAGE_BYTES,
            "compression_type": None if self.compression == "none" else self.compression,
        }

    def consumer_options(self) -> dict[str, Any]:
        """aiokafka consumer (and faststream subscriber) keyword arguments.

        `max_poll_records` is left unset: every consumer passes its own batch
        size (`max_records`) to each `getmany`.
        """
        return {
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "max_partition_fetch_bytes": self.max_partition_fetch_bytes,
            "fetch_max_bytes": self.fetch_max_bytes,
        }
