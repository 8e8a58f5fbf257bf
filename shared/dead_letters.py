"""Dead letters: what a consumer could not process, kept with the reason.

A dead letter's value is the original record's bytes, untouched; the reason
and the source position travel in headers, so `kcat -J` shows both and a
fixed record can be replayed as it was. A record too large to travel with
those headers (it filled the topic's maximum message size by itself) keeps
its first bytes that fit, with its size and SHA-256, as error type
`too_large`: it is still counted and alerted on, and its publisher can find
the original by digest.
"""

import asyncio
import hashlib
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple, TypeVar

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faststream.kafka import KafkaBroker

from shared.events.envelope import utc_now
from shared.topics import MAX_MESSAGE_BYTES, TopicSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
HEADER_PREFIX = "dead_letter."
MAX_REASON_LENGTH = 2000
MAX_KEY_BYTES = 1024
# Room left under the maximum message size for what the broker adds (batch
# framing, producer id) beyond aiokafka's own estimate.
FRAMING_ALLOWANCE = 512

# Error types the shared consumer gives; services add their own (intake's
# rejection reasons, complaints' `refused`, ...).
UNDECODABLE = "undecodable"
PROCESSING_FAILED = "processing_failed"
TOO_LARGE = "too_large"
SHARED_ERROR_TYPES = (UNDECODABLE, PROCESSING_FAILED, TOO_LARGE)


def _header_text(value: str) -> str:
    """Header values must encode as UTF-8: a lone surrogate from hostile JSON must not."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


class SourcePosition(NamedTuple):
    """Where a record was read: one per record consumed, so a named tuple (cheap to build)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    original: bytes
    key: bytes | None
    reason: str
    error_type: str
    source: SourcePosition
    attempts: int
    failed_at: datetime
    # Set only when `original` holds the first bytes of a record too large to keep whole.
    original_size: int | None = None
    original_sha256: str | None = None

    def headers(self) -> dict[str, str]:
        fields = {
            "reason": self.reason[:MAX_REASON_LENGTH],
            "error_type": self.error_type,
            "source_topic": self.source.topic,
            "source_partition": str(self.source.partition),
            "source_offset": str(self.source.offset),
            "attempts": str(self.attempts),
            "failed_at": self.failed_at.isoformat(),
        }
        if self.original_size is not None:
            fields["original_size"] = str(self.original_size)
        if self.original_sha256 is not None:
            fields["original_sha256"] = self.original_sha256
        return {HEADER_PREFIX + name: _header_text(value) for name, value in fields.items()}

    @classmethod
    def from_record(
        cls, value: bytes, key: bytes | None, headers: Mapping[str, str | bytes]
    ) -> "DeadLetter":
        def header(name: str) -> str:
            raw = headers[HEADER_PREFIX + name]
            return raw.decode() if isinstance(raw, bytes) else raw

        return cls(
            original=value,
            key=key,
            reason=header("reason"),
            error_type=header("error_type"),
            source=SourcePosition(
                header("source_topic"),
                int(header("source_partition")),
                int(header("source_offset")),
            ),
            attempts=int(header("attempts")),
            failed_at=datetime.fromisoformat(header("failed_at")),
            original_size=int(header("original_size"))
            if HEADER_PREFIX + "original_size" in headers
            else None,
            original_sha256=header("original_sha256")
            if HEADER_PREFIX + "original_sha256" in headers
            else None,
        )

    def cut_to_fit(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> "DeadLetter":
        """This letter, or one with the original's first bytes if it would not fit whole."""
        budget = max_message_bytes - FRAMING_ALLOWANCE
        if len(self.key or b"") <= MAX_KEY_BYTES and self._size() <= budget:
            return self
        cut = replace(
            self,
            key=None if self.key is None else self.key[:MAX_KEY_BYTES],
            original=b"",
            error_type=TOO_LARGE,
            reason=f"too_large: the record is {len(self.original):,} bytes, too large to "
            f"dead-letter whole; its first bytes are kept. It failed as "
            f"{self.error_type}: {self.reason}",
            original_size=len(self.original),
            original_sha256=hashlib.sha256(self.original).hexdigest(),
        )
        room = max(0, budget - cut._size() - 8)  # 8: the value's length varint grows
        return replace(cut, original=self.original[:room])

    def _size(self) -> int:
        size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(
            self.key,
            self.original,
            [(name, value.encode()) for name, value in self.headers().items()],
        )
        return size


async def send_dead_letter(
    broker: KafkaBroker,
    dead_letter_topic: TopicSpec,
    *,
    original: bytes,
    key: bytes | None,
    source: SourcePosition,
    reason: str,
    error_type: str,
    attempts: int = 1,
) -> DeadLetter:
    """Publish a dead letter, cut to fit the topic if needed; returns what was sent."""
    letter = DeadLetter(
        original=original,
        key=key,
        reason=reason,
        error_type=error_type,
        source=source,
        attempts=attempts,
        failed_at=utc_now(),
    ).cut_to_fit(dead_letter_topic.max_message_bytes)
    await broker.publish(
        letter.original, dead_letter_topic.name, key=letter.key, headers=letter.headers()
    )
    log.warning(
        "dead-lettered %s[%d]@%d: %s",
        source.topic,
        source.partition,
        source.offset,
        letter.reason,
    )
    return letter


class DependencyUnavailableError(Exception):
    """An outside service the consumer needs (GOV.UK Notify) cannot take work now.

    Not the record's fault: like an outage of Kafka or PostgreSQL, the batch
    is rewound and redelivered after the outage backoff. `retry_after_seconds`,
    when the service said how long to wait (HTTP Retry-After), is the least
    the consumer waits.
    """

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


def is_transient(error: BaseException) -> bool:
    """An outage of Kafka, PostgreSQL or an outside service (or a deadlock between
    transactions), not a fault of the record.

    Such errors are not counted against a record: dead-lettering everything
    during an outage would be wrong, so the batch is redelivered instead.
    """
    if isinstance(error, KafkaError):
        return bool(error.retriable) or isinstance(error, KafkaConnectionError | KafkaTimeoutError)
    return isinstance(
        error,
        ConnectionError
        | DependencyUnavailableError
        | TimeoutError
        | socket.gaierror
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.OperatorInterventionError  # shutdown, restart, cannot connect now
        | asyncpg.TooManyConnectionsError
        # A deadlock or serialization failure between two transactions (a consumer's
        # batch and a timer batch locking the same complaints): running it again works.
        | asyncpg.exceptions.TransactionRollbackError,
    )


class AttemptsExhaustedError(Exception):
    def __init__(self, attempts: int, last_error: BaseException) -> None:
        super().__init__(f"failed {attempts} times: {type(last_error).__name__}: {last_error}")
        self.attempts = attempts
        self.last_error = last_error


async def with_attempts(
    work: Callable[[], Awaitable[T]], *, max_attempts: int, backoff_seconds: float = 0.2
) -> T:
    """Run `work`, retrying unexpected errors up to `max_attempts` times in all.

    The cap is what keeps one poison record from blocking its partition: once
    it is spent, the caller dead-letters the record and moves on. Transient
    errors (see `is_transient`) are raised at once and never use the budget.
    """
    for attempt in range(1, max_attempts + 1):
        try:
            return await work()
        except Exception as error:
            if is_transient(error):
                raise
            if attempt == max_attempts:
                raise AttemptsExhaustedError(attempt, error) from error
            log.warning("attempt %d/%d failed: %r", attempt, max_attempts, error)
            await asyncio.sleep(backoff_seconds * attempt)
    raise AssertionError("unreachable")
