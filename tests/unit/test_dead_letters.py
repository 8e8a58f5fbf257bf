"""Dead letters: their headers survive Kafka, and retries are capped."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, UnknownTopicOrPartitionError

from shared.dead_letters import (
    HEADER_PREFIX,
    MAX_REASON_LENGTH,
    AttemptsExhaustedError,
    DeadLetter,
    SourcePosition,
    is_transient,
    with_attempts,
)

FAILED_AT = datetime(2026, 1, 12, 9, 31, 15, 123_456, tzinfo=UTC)


LETTER = DeadLetter(
    original=b'{"record_type": "contact_received", "channel": "fax"}',
    key=b"contact-0042",
    reason="unknown_vocabulary: channel: unknown value 'fax'",
    error_type="unknown_vocabulary",
    source=SourcePosition("civicpulse.contacts.raw", 3, 1_234_567),
    attempts=1,
    failed_at=FAILED_AT,
)


class Flaky:
    """Work that fails with the given errors, in turn, then returns `done`."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


# -- headers ------------------------------------------------------------------------------


def test_a_dead_letter_survives_the_round_trip_through_its_headers() -> None:
    letter = LETTER

    again = DeadLetter.from_record(letter.original, letter.key, letter.headers())

    assert again == letter


def test_a_dead_letter_survives_headers_that_arrive_as_bytes() -> None:
    letter = LETTER
    as_bytes = {name: value.encode() for name, value in letter.headers().items()}

    again = DeadLetter.from_record(letter.original, letter.key, as_bytes)

    assert again == letter


def test_a_dead_letter_without_a_key_survives_the_round_trip() -> None:
    letter = replace(LETTER, key=None, attempts=5, reason="processing_failed: failed 5 times")

    assert DeadLetter.from_record(letter.original, None, letter.headers()) == letter


def test_a_failure_time_with_another_offset_keeps_its_instant() -> None:
    letter = replace(
        LETTER, failed_at=datetime(2026, 6, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    )

    again = DeadLetter.from_record(letter.original, letter.key, letter.headers())

    assert again.failed_at == datetime(2026, 6, 1, 9, 30, tzinfo=UTC)


def test_every_header_is_named_under_the_dead_letter_prefix() -> None:
    headers = LETTER.headers()

    assert headers == {
        "dead_letter.reason": "unknown_vocabulary: channel: unknown value 'fax'",
        "dead_letter.error_type": "unknown_vocabulary",
        "dead_letter.source_topic": "civicpulse.contacts.raw",
        "dead_letter.source_partition": "3",
        "dead_letter.source_offset": "1234567",
        "dead_letter.attempts": "1",
        "dead_letter.failed_at": "2026-01-12T09:31:15.123456+00:00",
    }
    assert all(name.startswith(HEADER_PREFIX) for name in headers)


def test_a_long_reason_is_cut_to_the_maximum_in_the_headers() -> None:
    letter = replace(LETTER, reason="x" * (MAX_REASON_LENGTH + 500))

    reason = letter.headers()[HEADER_PREFIX + "reason"]

    assert reason == "x" * MAX_REASON_LENGTH


def test_a_dead_letter_keeps_the_original_bytes_untouched() -> None:
    original = b"\xff\xfe not even utf-8"

    again = DeadLetter.from_record(original, b"k", replace(LETTER, original=original).headers())

    assert again.original == original


def test_a_record_missing_a_dead_letter_header_cannot_be_read_as_one() -> None:
    headers = LETTER.headers()
    del headers[HEADER_PREFIX + "source_offset"]

    with pytest.raises(KeyError):
        DeadLetter.from_record(b"{}", None, headers)


# -- attempts -----------------------------------------------------------------------------


async def test_work_that_succeeds_at_once_runs_once() -> None:
    work = Flaky()

    assert await with_attempts(work, max_attempts=3, backoff_seconds=0) == "done"
    assert work.calls == 1


async def test_work_that_succeeds_on_a_later_attempt_returns_its_result() -> None:
    work = Flaky(ValueError("first"), ValueError("second"))

    assert await with_attempts(work, max_attempts=3, backoff_seconds=0) == "done"
    assert work.calls == 3


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
async def test_work_that_keeps_failing_is_tried_exactly_max_attempts_times(
    max_attempts: int,
) -> None:
    errors = [ValueError(f"failure {n}") for n in range(1, max_attempts + 2)]
    work = Flaky(*errors)

    with pytest.raises(AttemptsExhaustedError) as exhausted:
        await with_attempts(work, max_attempts=max_attempts, backoff_seconds=0)

    assert work.calls == max_attempts
    assert exhausted.value.attempts == max_attempts
    assert exhausted.value.last_error is errors[max_attempts - 1]
    assert exhausted.value.__cause__ is errors[max_attempts - 1]
    assert f"failed {max_attempts} times: ValueError: failure {max_attempts}" in str(
        exhausted.value
    )


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("PostgreSQL is down"),
        TimeoutError(),
        KafkaConnectionError(),
        KafkaTimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_a_transient_error_is_raised_at_once_without_a_retry(error: Exception) -> None:
    work = Flaky(error)

    with pytest.raises(type(error)) as raised:
        await with_attempts(work, max_attempts=5, backoff_seconds=0)

    assert raised.value is error
    assert work.calls == 1


async def test_a_transient_error_after_a_failed_attempt_is_raised_as_it_is() -> None:
    outage = ConnectionRefusedError("PostgreSQL is down")
    work = Flaky(ValueError("bad record"), outage)

    with pytest.raises(ConnectionRefusedError) as raised:
        await with_attempts(work, max_attempts=5, backoff_seconds=0)

    assert raised.value is outage
    assert work.calls == 2


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        KafkaConnectionError(),
        KafkaTimeoutError(),
        UnknownTopicOrPartitionError(),
        asyncpg.TooManyConnectionsError(),
        asyncpg.exceptions.DeadlockDetectedError(),
        asyncpg.exceptions.SerializationError(),
    ],
    ids=lambda error: type(error).__name__,
)
def test_an_outage_is_transient(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [ValueError("bad"), KeyError("x"), TypeError(), asyncpg.UniqueViolationError()],
    ids=lambda error: type(error).__name__,
)
def test_a_fault_of_the_record_is_not_transient(error: Exception) -> None:
    assert not is_transient(error)
