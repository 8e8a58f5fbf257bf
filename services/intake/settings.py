"""Intake's settings (environment variables `CIVICPULSE_*`)."""

from pydantic import Field

from shared.api_keys import ApiKeyHashes
from shared.settings import ServiceSettings

SERVICE = "intake"


class IntakeSettings(ServiceSettings):
    http_port: int = Field(default=8001, ge=1, le=65535, description="HTTP port.")
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
