"""The erasure receipt every service returns from `DELETE /v1/customers/{customer_ref}`.

A receipt says what was deleted, per table with counts, and which copies stay on
Kafka topics, which a service cannot delete one record at a time: until which
date their retention keeps them, and whether they hold personal data. The copy
on a topic kept for ever must hold none; the receipt says so plainly.
`python -m civicpulse erase <ref>` calls each service and prints one receipt.
"""

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from shared.topics import DAY_MS, FOREVER, TopicSpec

# Kafka deletes a topic's records a whole segment at a time, once the newest
# record in the segment is past retention; a segment rolls after
# `log.roll.hours` (168 by default, which our topics keep). So a record may
# outlive its retention by up to this long.
SEGMENT_ROLL = timedelta(days=7)


class DeletedRows(BaseModel):
    service: str = Field(examples=["feedback"])
    table: str = Field(examples=["feedback_contact_routes"])
    rows: int = Field(ge=0, description="Rows deleted, or whose free text was removed.")


class RemainingCopy(BaseModel):
    service: str = Field(description="The service that wrote the copies.")
    topic: str
    retention: str = Field(examples=["30 days", "forever"])
    until: datetime | None = Field(
        description="Latest time a copy can remain (newest record + retention + one segment "
        "roll of 7 days); null on a topic kept for ever."
    )
    personal_data: bool = Field(
        description="Whether the copies hold personal data beyond the pseudonymous reference."
    )
    note: str


class ErasureReceipt(BaseModel):
    customer_ref: str
    erased_at: datetime
    erased_rows: int = Field(ge=0, description="All rows deleted, over every table listed.")
    deleted: list[DeletedRows]
    remaining: list[RemainingCopy] = Field(
        description="Copies on Kafka topics, which erasure cannot delete record by record."
    )

    @classmethod
    def of(
        cls,
        customer_ref: str,
        erased_at: datetime,
        deleted: list[DeletedRows],
        remaining: list[RemainingCopy],
    ) -> "ErasureReceipt":
        return cls(
            customer_ref=customer_ref,
            erased_at=erased_at,
            erased_rows=sum(d.rows for d in deleted),
            deleted=deleted,
            remaining=remaining,
        )

    def combined(self, other: "ErasureReceipt") -> "ErasureReceipt":
        """One receipt for both, as the `erase` command prints it."""
        return ErasureReceipt.of(
            self.customer_ref,
            max(self.erased_at, other.erased_at),
            self.deleted + other.deleted,
            self.remaining + other.remaining,
        )


def retention_text(topic: TopicSpec) -> str:
    if topic.retention_ms == FOREVER:
        return "forever"
    return f"{topic.retention_ms // DAY_MS} days"


def kept_until(topic: TopicSpec, newest: datetime) -> datetime | None:
    """The latest a record written at `newest` stays on `topic`; None if kept for ever."""
    if topic.retention_ms == FOREVER:
        return None
    return newest.astimezone(UTC) + timedelta(milliseconds=topic.retention_ms) + SEGMENT_ROLL


def remaining_copy(
    service: str, topic: TopicSpec, newest: datetime, *, personal_data: bool, note: str
) -> RemainingCopy:
    return RemainingCopy(
        service=service,
        topic=topic.name,
        retention=retention_text(topic),
        until=kept_until(topic, newest),
        personal_data=personal_data,
        note=note,
    )
