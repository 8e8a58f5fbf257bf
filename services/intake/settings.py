"""Intake's settings (environment variables `CIVICPULSE_*`)."""

from datetime import UTC, date, datetime, timedelta

from pydantic import Field

from services.intake.domain import TimestampBounds
from shared.api_keys import ApiKeyHashes
from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    http_port: int = Field(default=8001, ge=1, le=65535, description="HTTP port.")
    http_max_body_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1_024,
        le=64 * 1024 * 1024,
        description="Largest request body (a batch of up to 1,000 records); larger is a 413.",
    )
    intake_group_id: str = Field(
        default="civicpulse-intake", description="Consumer group of the raw-topic consumer."
    )
    intake_max_batch: int = Field(
        default=500, ge=1, le=5000, description="Raw records handled per batch."
    )
    intake_api_keys: ApiKeyHashes = Field(
        default_factory=dict,
        description="JSON object mapping each source system to the SHA-256 hash of its API "
        'key, e.g. {"crm": "sha256:9f86d0…"}. Make one with '
        "`python -m services.intake new-api-key SOURCE`.",
    )
    max_clock_skew_seconds: int = Field(
        default=900,
        ge=0,
        le=86_400,
        description="How far ahead of intake's clock a record's occurred_at may be "
        "(publishers' clock skew); later is refused as occurred_in_future.",
    )
    earliest_occurred_at: date = Field(
        default=date(2000, 1, 1),
        ge=date(1900, 1, 1),  # no event can carry an earlier instant (shared/events/envelope.py)
        description="Earliest day (UTC) a record's occurred_at may fall on; earlier is "
        "refused as occurred_too_early. Backfills of real history after it are accepted.",
    )

    def timestamp_bounds(self) -> TimestampBounds:
        earliest = datetime.combine(self.earliest_occurred_at, datetime.min.time(), tzinfo=UTC)
        return TimestampBounds(timedelta(seconds=self.max_clock_skew_seconds), earliest)
