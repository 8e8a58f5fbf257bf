"""Intake's settings (environment variables `CIVICPULSE_*`)."""

from datetime import UTC, date, datetime, timedelta

from pydantic import Field

from services.intake.domain import TimestampBounds
from shared.api_keys import ApiKeyHashes
from shared.settings import (
    ServiceSettings,
    api_keys_field,
    batch_field,
    group_field,
    port_field,
)

SERVICE = "intake"


class IntakeSettings(ServiceSettings):
    http_port: int = port_field(8001)
    http_max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1_024, le=64 * 1024 * 1024)
    """Largest request body (a batch of up to 1,000 records); larger is a 413."""
    intake_group_id: str = group_field("civicpulse-intake", consuming="the raw-topic consumer")
    intake_max_batch: int = batch_field(500, handled="Raw records handled")
    intake_api_keys: ApiKeyHashes = api_keys_field(
        service=SERVICE, caller="source system", example="crm"
    )
    max_clock_skew_seconds: int = Field(default=900, ge=0, le=86_400)
    """How far ahead of intake's clock a record's occurred_at may be (publishers' clock skew);
    later is refused as occurred_in_future."""
    # No event can carry an instant before 1900 (shared/events/envelope.py).
    earliest_occurred_at: date = Field(default=date(2000, 1, 1), ge=date(1900, 1, 1))
    """Earliest day (UTC) a record's occurred_at may fall on; earlier is refused as
    occurred_too_early. Backfills of real history after it are accepted."""

    def timestamp_bounds(self) -> TimestampBounds:
        earliest = datetime.combine(self.earliest_occurred_at, datetime.min.time(), tzinfo=UTC)
        return TimestampBounds(timedelta(seconds=self.max_clock_skew_seconds), earliest)
