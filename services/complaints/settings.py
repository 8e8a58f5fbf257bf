"""The complaints service's settings (environment variables `CIVICPULSE_*`)."""

from datetime import date

from pydantic import Field

from shared.api_keys import ApiKeyHashes
from shared.settings import ServiceSettings

SERVICE = "complaints"


class ComplaintsSettings(ServiceSettings):
    http_port: int = Field(default=8002, ge=1, le=65535, description="HTTP port.")
    http_max_body_bytes: int = Field(
        default=256 * 1024,
        ge=1_024,
        le=64 * 1024 * 1024,
        description="Largest request body (one case action); larger is a 413.",
    )
    complaints_group_id: str = Field(
        default="civicpulse-complaints",
        description="Consumer group of the contacts and case-actions consumers.",
    )
    complaints_max_batch: int = Field(
        default=500, ge=1, le=5000, description="Records handled, in one transaction, per batch."
    )
    complaints_closure_days: list[date] = Field(
        default_factory=list,
        description="Council closure days that are not working days, as a JSON list of ISO "
        'dates, e.g. ["2026-12-29", "2026-12-30"]. Open deadlines are recounted at start-up '
        "when the list changes.",
    )
    complaints_escalation_window_working_days: int = Field(
        default=20,
        ge=1,
        le=60,
        description="Working days after a stage 1 response in which the customer may ask for "
        "stage 2 (corporate complaints; children's social care has its statutory 20).",
    )
    complaints_escalation_window_calendar_month: bool = Field(
        default=False,
        description="When true, the corporate escalation window is a calendar month from the "
        "stage 1 response (to the same date next month, or the next working day) instead of "
        "CIVICPULSE_COMPLAINTS_ESCALATION_WINDOW_WORKING_DAYS.",
    )
    complaints_timer_poll_seconds: float = Field(
        default=5.0, gt=0, le=300, description="How often due deadlines are looked for."
    )
    complaints_metrics_refresh_seconds: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="How often the gauges read from PostgreSQL and Kafka are refreshed.",
    )
    complaints_api_keys: ApiKeyHashes = Field(
        default_factory=dict,
        description="JSON object mapping each case-management system to the SHA-256 hash of "
        'its API key, e.g. {"case-manager": "sha256:9f86d0…"}. Make one with '
        "`python -m services.complaints new-api-key SOURCE`.",
    )
