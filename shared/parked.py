"""Parked work: timers and outbox rows that kept failing, set aside with their error.

A timer whose firing fails, or an outbox row that cannot be published, is
tried again after a backoff that doubles from `backoff_seconds` up to
`backoff_max_seconds`. After `max_attempts` it is parked: it stops being
tried, the service's `timers_parked` / `outbox_parked` gauge counts it (an
alert fires), and the rest of the service's work carries on. An operator
lists parked rows and, once the cause is fixed, retries them:
`python -m civicpulse parked list|retry --service complaints`.

Retry times are the database's clock (`clock_timestamp()`), not a service's
injected domain clock: backoff is about when to try again, not about what is due.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.postgres import Connection
from shared.settings import ServiceSettings

MAX_ERROR_LENGTH = 2000


class ParkedKind(StrEnum):
    TIMERS = "timers"
    OUTBOX = "outbox"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 300.0

    @classmethod
    def for_timers(cls, settings: ServiceSettings) -> "RetryPolicy":
        return cls(
            settings.timer_max_attempts,
            settings.retry_backoff_seconds,
            settings.retry_backoff_max_seconds,
        )

    @classmethod
    def for_outbox(cls, settings: ServiceSettings) -> "RetryPolicy":
        return cls(
            settings.outbox_max_attempts,
            settings.retry_backoff_seconds,
            settings.retry_backoff_max_seconds,
        )


def outbox_channel(service: str) -> str:
    """The NOTIFY channel that wakes a service's outbox relay."""
    return f"outbox_{service.replace('-', '_')}"


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]


# One attempt more; parked at the cap, else due again after the doubled backoff.
_FAILED = """
    SET attempts = attempts + 1,
        last_error = $3,
        parked_at = CASE WHEN attempts + 1 >= $4 THEN clock_timestamp() END,
        next_attempt_at = CASE WHEN attempts + 1 < $4 THEN clock_timestamp()
            + make_interval(secs => least($6::float8, $5::float8 * 2 ^ attempts)) END
"""


async def timer_failed(
    connection: Connection, service: str, timer_id: str, error: str, policy: RetryPolicy
) -> bool:
    """Count a failed firing; returns True when the timer is now parked."""
    parked: bool = await connection.fetchval(
        f"UPDATE timers {_FAILED} WHERE service = $1 AND timer_id = $2 "
        "RETURNING parked_at IS NOT NULL",
        service,
        timer_id,
        error,
        policy.max_attempts,
        policy.backoff_seconds,
        policy.backoff_max_seconds,
    )
    return parked


async def outbox_row_failed(
    connection: Connection, service: str, row_id: int, error: str, policy: RetryPolicy
) -> bool:
    """Count a failed publication; returns True when the row is now parked."""
    parked: bool = await connection.fetchval(
        f"UPDATE outbox {_FAILED} WHERE service = $1 AND id = $2 RETURNING parked_at IS NOT NULL",
        service,
        row_id,
        error,
        policy.max_attempts,
        policy.backoff_seconds,
        policy.backoff_max_seconds,
    )
    return parked


async def count_parked(connection: Connection, kind: ParkedKind, service: str) -> int:
    count: int = await connection.fetchval(
        f"SELECT count(*) FROM {kind.value} WHERE service = $1 AND parked_at IS NOT NULL"
        + (" AND fired_at IS NULL AND cancelled_at IS NULL" if kind is ParkedKind.TIMERS else ""),
        service,
    )
    return count


@dataclass(frozen=True, slots=True)
class ParkedItem:
    kind: ParkedKind
    service: str
    item_id: str  # a timer's id, or an outbox row's id
    subject: str  # the timer's subject, or the outbox row's topic and key
    attempts: int
    parked_at: datetime
    last_error: str


async def list_parked(connection: Connection, service: str | None = None) -> list[ParkedItem]:
    """Every parked timer and outbox row, of one service or all, oldest first."""
    rows = await connection.fetch(
        """
        SELECT 'timers' AS kind, service, timer_id AS item_id, kind || ' ' || subject AS subject,
               attempts, parked_at, last_error
        FROM timers
        WHERE parked_at IS NOT NULL AND fired_at IS NULL AND cancelled_at IS NULL
          AND ($1::text IS NULL OR service = $1)
        UNION ALL
        SELECT 'outbox', service, id::text, topic || ' ' || encode(key, 'escape'),
               attempts, parked_at, last_error
        FROM outbox
        WHERE parked_at IS NOT NULL AND ($1::text IS NULL OR service = $1)
        ORDER BY parked_at
        """,
        service,
    )
    return [
        ParkedItem(
            kind=ParkedKind(row["kind"]),
            service=row["service"],
            item_id=row["item_id"],
            subject=row["subject"],
            attempts=row["attempts"],
            parked_at=row["parked_at"],
            last_error=row["last_error"] or "",
        )
        for row in rows
    ]


async def retry_parked(
    connection: Connection,
    service: str,
    *,
    kind: ParkedKind | None = None,
    item_ids: list[str] | None = None,
) -> int:
    """Unpark (all, or the named) parked items of `service` with a fresh attempt budget.

    They are tried on the scheduler's or relay's next pass; returns how many.
    """
    retried = 0
    if kind in (None, ParkedKind.TIMERS):
        result = await connection.execute(
            """
            UPDATE timers SET parked_at = NULL, next_attempt_at = NULL, attempts = 0
            WHERE service = $1 AND parked_at IS NOT NULL
              AND fired_at IS NULL AND cancelled_at IS NULL
              AND ($2::text[] IS NULL OR timer_id = ANY($2::text[]))
            """,
            service,
            item_ids,
        )
        retried += int(result.split()[-1])
    if kind in (None, ParkedKind.OUTBOX):
        result = await connection.execute(
            """
            UPDATE outbox SET parked_at = NULL, next_attempt_at = NULL, attempts = 0
            WHERE service = $1 AND parked_at IS NOT NULL
              AND ($2::text[] IS NULL OR id::text = ANY($2::text[]))
            """,
            service,
            item_ids,
        )
        retried += int(result.split()[-1])
        await connection.execute("SELECT pg_notify($1, '')", outbox_channel(service))
    return retried
