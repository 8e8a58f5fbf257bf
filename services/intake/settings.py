"""Intake's settings (environment variables `CIVICPULSE_*`)."""

import hashlib
import re

from pydantic import Field, field_validator

from shared.settings import ServiceSettings


def hash_api_key(key: str) -> str:
    # Keys are 32 random bytes, so a plain SHA-256 is enough: there is nothing
    # to brute-force that a slow password hash would protect.
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class IntakeSettings(ServiceSettings):
    http_port: int = Field(default=8001, ge=1, le=65535, description="HTTP port.")
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

    @field_validator("intake_api_keys")
    @classmethod
    def _source_names_and_hashes(cls, keys: dict[str, str]) -> dict[str, str]:
        for source, key_hash in keys.items():
            if not SOURCE_NAME.fullmatch(source):
                raise ValueError(f"source {source!r}: use a-z, 0-9, '_' or '-', at most 64")
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", key_hash):
                raise ValueError(f"{source}: give the key's hash ('sha256:<64 hex>'), not the key")
        return keys
