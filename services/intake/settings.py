"""Intake's settings (environment variables `CIVICPULSE_*`)."""

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
    intake_group_id: str = group_field("civicpulse-intake", consuming="the raw-topic consumer")
    intake_max_batch: int = batch_field(500, handled="Raw records handled")
    intake_api_keys: ApiKeyHashes = api_keys_field(
        service=SERVICE, caller="source system", example="crm"
    )
