"""Intake's settings (environment variables `CIVICPULSE_*`)."""

import hashlib

from pydantic import Field

from shared.settings import ServiceSettings


def hash_api_key(key: str) -> str:
    # Keys are 32 random bytes, so a plain SHA-256 is enough: there is nothing
    # to brute-force that a slow password hash would protect.
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class IntakeSettings(ServiceSettings):
    http_port: int = Field(default=8001, ge=1, le=65535)
    intake_group_id: str = Field(
        default="civicpulse-intake", description="Consumer group of the raw-topic consumer."
    )
    intake_max_batch: int = Field(
        default=500, ge=1, le=5000, description="Raw records handled per batch."
    )
    intake_api_keys: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object mapping each source system to the SHA-256 hash of its API "
        'key, e.g. {"crm": "sha256:9f86d0…"}. Make one with '
        "`python -m services.intake new-api-key SOURCE`.",
    )
