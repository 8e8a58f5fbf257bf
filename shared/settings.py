"""Settings read from `CIVICPULSE_*` environment variables.

Each service subclasses `ServiceSettings` for its own options; the defaults
suit the local launcher (`civicpulse infra up`). The field helpers below give
the options every service has in its own name (its port, consumer group,
batch size and API keys) one definition, so their limits and wording agree.
"""

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_VOCABULARY_FILE = Path(__file__).with_name("vocabulary.yaml")


class ServiceSettings(BaseSettings):
    # Each field's description is the docstring under it (also in docs/configuration.md).
    model_config = SettingsConfigDict(
        env_prefix="CIVICPULSE_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    kafka_bootstrap: str = "127.0.0.1:19092"
    """Kafka bootstrap servers, comma separated."""
    database_url: str = "postgresql://civicpulse@127.0.0.1:15432/civicpulse"
    """PostgreSQL DSN (asyncpg form)."""
    http_host: str = "127.0.0.1"
    """Address the HTTP server binds."""
    http_port: int = Field(default=8000, ge=1, le=65535)
    """HTTP port (per service)."""
    vocabulary_file: Path = DEFAULT_VOCABULARY_FILE
    """YAML file with the council's service areas."""
    dead_letter_max_attempts: int = Field(default=3, ge=1, le=20)
    """Attempts at a failing record before it is dead-lettered: no poison record blocks."""
    create_topics: bool = True
    """Create missing topics at start-up (off where ops own topics)."""
    topic_replication_factor: int = Field(default=1, ge=1, le=5)
    """Replicas of each topic created at start-up (3 in production)."""
    log_level: str = "INFO"
    """Python logging level."""


def port_field(default: int) -> Any:
    """The service's HTTP port; each service has its own default."""
    return Field(default=default, ge=1, le=65535, description="HTTP port.")


def group_field(default: str, *, consuming: str) -> Any:
    """A Kafka consumer group's id: `consuming` says what the group reads."""
    return Field(default=default, description=f"Consumer group of {consuming}.")


def batch_field(default: int, *, handled: str, most: int = 5000) -> Any:
    """How many records one batch (one transaction) takes at the most."""
    return Field(default=default, ge=1, le=most, description=f"{handled} per batch.")


def api_keys_field(*, service: str, caller: str, example: str) -> Any:
    """The hashes of the API keys of the systems that call the service over HTTP."""
    return Field(
        default_factory=dict,
        description=f"JSON object mapping each {caller} to the SHA-256 hash of its API "
        f'key, e.g. {{"{example}": "sha256:9f86d0…"}}. Make one with '
        f"`python -m services.{service} new-api-key SOURCE`.",
    )
