"""The envelope every CivicPulse event travels in.

Events are immutable facts. Each concrete event pins its `event_type` and
`schema_version` as literals, so a payload change is a new class with a new
version that consumers accept side by side with the old one.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated, ClassVar, TypeVar
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
)

# Instants outside these years are refused: the day, working day, period or
# financial year computed from one must still be a `date` (years 1 to 9999).
EARLIEST_INSTANT = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-01:00 is a valid ISO 8601 instant past datetime's
        # range in UTC; a ValueError makes it a validation error, not a crash.
        raise ValueError("instant is outside the range of dates in UTC") from None
    if not EARLIEST_INSTANT <= utc < LATEST_INSTANT:
        raise ValueError("instant must fall in the years 1900 to 8999 (UTC)")
    return utc


UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_as_utc),
    Field(description="Timezone-aware instant, normalised to UTC; years 1900 to 8999."),
]


K = TypeVar("K")
V = TypeVar("V")
# A read-only mapping: a frozen model alone would still let a dict field be
# changed in place. Serialised as a plain JSON object.
FrozenMapping = Annotated[
    Mapping[K, V],
    AfterValidator(MappingProxyType),
    PlainSerializer(dict, return_type=dict),
]


def utc_now() -> datetime:
    return datetime.now(UTC)


class FrozenModel(BaseModel):
    """Base of every payload: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(FrozenModel):
    """Fields shared by every event; subclasses add the subject key and payload."""

    event_id: UUID = Field(
        default_factory=uuid4,
        description="Unique id of this event; consumers deduplicate on it.",
    )
    event_type: str
    schema_version: int
    occurred_at: UtcDatetime = Field(description="When it happened in the world.")
    recorded_at: UtcDatetime = Field(
        default_factory=utc_now, description="When CivicPulse recorded it."
    )
    source: str = Field(
        min_length=1,
        max_length=64,
        description="The system that published the fact.",
        examples=["crm", "telephony", "civicpulse-complaints"],
    )
    correlation_id: UUID | None = Field(
        default=None, description="Id shared by every event of one case or conversation."
    )
    causation_id: UUID | None = Field(
        default=None, description="event_id of the event that caused this one."
    )

    # The name of the field that holds the subject key; set by each family.
    key_field: ClassVar[str] = ""

    @property
    def key(self) -> str:
        """The Kafka record key: the subject, so one subject's events stay ordered."""
        return str(getattr(self, self.key_field))

    def to_bytes(self) -> bytes:
        """`model_dump_json().encode()`: the serialiser's own bytes, without its wrapper's
        keyword handling and a round trip through `str` (half the cost of an event)."""
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def type_name(cls) -> str:
        """The class's `event_type`, without an instance."""
        name: str = cls.model_fields["event_type"].default
        return name

    @classmethod
    def version(cls) -> int:
        """The class's `schema_version`, without an instance."""
        version: int = cls.model_fields["schema_version"].default
        return version

    @classmethod
    def type_tag(cls) -> str:
        """`EventType:version`, the tag the catalogue's union dispatches on."""
        return f"{cls.type_name()}:{cls.version()}"
