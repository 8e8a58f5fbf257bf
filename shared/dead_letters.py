"""Dead letters: what a consumer could not process, kept with the reason.

A dead letter's value is the original record's bytes, untouched; the reason
and the source position travel in headers, so `kcat -J` shows both and a
fixed record can be replayed as it was.
"""

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from faststream.kafka import KafkaBroker

from shared.events.envelope import utc_now
from shared.topics import TopicSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
HEADER_PREFIX = "dead_letter."
MAX_REASON_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class SourcePosition:
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
        return {HEADER_PREFIX + name: value for name, value in fields.items()}

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
        )


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
    letter = DeadLetter(
        original=original,
        key=key,
        reason=reason,
        error_type=error_type,
        source=source,
        attempts=attempts,
        failed_at=utc_now(),
    )
    await broker.publish(original, dead_letter_topic.name, key=key, headers=letter.headers())
    log.warning(
        "dead-lettered %s[%d]@%d: %s",
        source.topic,
        source.partition,
        source.offset,
        letter.reason,
    )
    return letter


def is_transient(error: BaseException) -> bool:
    """An outage of Kafka or PostgreSQL, not a fault of the record.

    Such errors are not counted against a record: dead-lettering everything
    during an outage would be wrong, so the batch is redelivered instead.
    """
    if isinstance(error, KafkaError):
        return bool(error.retriable) or isinstance(error, KafkaConnectionError | KafkaTimeoutError)
    return isinstance(
        error,
        ConnectionError
        | TimeoutError
        | socket.gaierror
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.OperatorInterventionError  # shutdown, restart, cannot connect now
        | asyncpg.TooManyConnectionsError,
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
