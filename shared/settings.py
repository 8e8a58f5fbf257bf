"""Settings read from `CIVICPULSE_*` environment variables.

Each service subclasses `ServiceSettings` for its own options; the defaults
suit the local launcher (`civicpulse infra up`). The field helpers below give
the options every service has in its own name (its port, consumer group,
batch size and API keys) one definition, so their limits and wording agree.
In production (`CIVICPULSE_ENVIRONMENT=production`) a service checks them
first and refuses to start on any unsafe one (`shared.production`).
"""

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.kafka import (
    ClientTuning,
    Compression,
    KafkaConnection,
    SaslMechanism,
    SecurityProtocol,
)

DEFAULT_VOCABULARY_FILE = Path(__file__).with_name("vocabulary.yaml")
DEFAULT_TUNING = ClientTuning()


class ServiceSettings(BaseSettings):
    # A subclass may give a field its description as the docstring under it.
    model_config = SettingsConfigDict(
        env_prefix="CIVICPULSE_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    kafka_bootstrap: str = "127.0.0.1:19092"
    """Kafka bootstrap servers, comma separated."""
    database_url: str = "postgresql://civicpulse@127.0.0.1:15432/civicpulse"
    """PostgreSQL DSN (asyncpg form)."""
    migration_database_url: str | None = None
    """PostgreSQL DSN of the owner role that runs migrations (deploy/postgres/roles.sql); unset:
    the service's own role runs them."""
    http_host: str = "127.0.0.1"
    """Address the HTTP server binds."""
    http_port: int = Field(default=8000, ge=1, le=65535)
    """HTTP port (per service)."""
    http_forwarded_allow_ips: str = "127.0.0.1"
    """Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed (comma separated
    addresses or networks, uvicorn's `forwarded_allow_ips`): the client address then is the
    nearest one in `X-Forwarded-For` that is not itself a trusted proxy."""
    http_max_body_bytes: int = Field(default=16_384, ge=1_024, le=64 * 1024 * 1024)
    """Largest request body accepted; a larger one is refused with 413 before it is read whole (per
    service)."""
    vocabulary_file: Path = DEFAULT_VOCABULARY_FILE
    """YAML file with the council's service areas."""
    dead_letter_max_attempts: int = Field(default=3, ge=1, le=20)
    """Attempts at a record failing for an unexpected reason before it is dead-lettered, so one
    poison record cannot block its partition."""
    dead_letter_retry_backoff_seconds: float = Field(default=0.2, ge=0, le=60)
    """Pause before a failing record's next attempt; it grows with each attempt (0.2 s, 0.4 s,
    ...)."""
    outage_backoff_seconds: float = Field(default=0.5, gt=0, le=60)
    """First pause before a batch is redelivered after an outage of Kafka or PostgreSQL; it doubles
    with each failed redelivery, up to the maximum."""
    outage_backoff_max_seconds: float = Field(default=30.0, gt=0, le=240)
    """Longest pause between redeliveries during an outage (below the consumer's five-minute poll
    interval)."""
    timer_max_attempts: int = Field(default=5, ge=1, le=100)
    """Attempts at firing one durable timer before it is parked with its error."""
    outbox_max_attempts: int = Field(default=5, ge=1, le=100)
    """Attempts at publishing one outbox row before it is parked with its error."""
    outbox_batch_size: int = Field(default=500, ge=1, le=10_000)
    """Outbox rows the relay publishes per round; while rows are pending it starts the next round
    at once."""
    outbox_idle_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    """Longest wait of an idle outbox relay: a commit that writes the outbox wakes it at once
    (NOTIFY), so this only bounds a missed wake-up."""
    timer_poll_seconds: float = Field(default=1.0, gt=0, le=300)
    """How often a service looks for due durable timers (feedback's survey sends; complaints has
    CIVICPULSE_COMPLAINTS_TIMER_POLL_SECONDS); a pass that fills its batch looks again at once."""
    retry_backoff_seconds: float = Field(default=2.0, gt=0, le=3600)
    """First wait before a failed timer or outbox row is tried again; it doubles with each attempt,
    up to the maximum."""
    retry_backoff_max_seconds: float = Field(default=300.0, gt=0, le=86400)
    """Longest wait between attempts at a failed timer or outbox row."""
    create_topics: bool = True
    """Create missing topics at start-up (off where ops own topics)."""
    topic_replication_factor: int = Field(default=1, ge=1, le=5)
    """Replicas of each topic created at start-up (3 in production)."""
    log_level: str = "INFO"
    """Python logging level."""
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve /metrics on this port only (not on the API port), for the "
        "monitoring network; required in production.",
    )
    api_docs_in_production: bool = Field(
        default=False, description="Keep /docs, /redoc and /openapi.json on in production."
    )
    environment: Literal["development", "production"] = Field(
        default="development",
        description="`production` makes a service refuse to start on demo credentials, "
        "plaintext transport or weak secrets, listing every problem (docs/production.md).",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="Kafka transport: PLAINTEXT (local only), SSL or SASL_SSL.",
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        default="SCRAM-SHA-512", description="SASL mechanism with SASL_SSL: SCRAM-SHA-512 or PLAIN."
    )
    kafka_sasl_username: str = Field(
        default="", description="The service's Kafka principal (user name) with SASL_SSL."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="The Kafka user's password (or use the password file)."
    )
    kafka_sasl_password_file: Path | None = Field(
        default=None,
        description="File holding the Kafka user's password (a mounted secret); read at start.",
    )
    kafka_ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the brokers' certificates "
        "(the system's trust store when unset).",
    )
    kafka_ssl_cert_file: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (optional)."
    )
    kafka_ssl_key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate (optional)."
    )

    kafka_linger_ms: int = Field(
        default=DEFAULT_TUNING.linger_ms,
        ge=0,
        le=1000,
        description="How long a producer waits for more records to a partition before sending "
        "(latency paid only under light traffic; docs/production.md).",
    )
    kafka_batch_bytes: int = Field(
        default=DEFAULT_TUNING.batch_bytes,
        ge=16_384,
        le=1024 * 1024,
        description="Largest producer batch per partition, before compression; at most the "
        "topics' 1 MiB message limit.",
    )
    kafka_compression: Compression = Field(
        default=DEFAULT_TUNING.compression,
        description="Producer compression: none, gzip, lz4 or zstd.",
    )

    @property
    def kafka_tuning(self) -> ClientTuning:
        """How this service's producers batch and compress (`shared.kafka.ClientTuning`)."""
        return ClientTuning(
            linger_ms=self.kafka_linger_ms,
            batch_bytes=self.kafka_batch_bytes,
            compression=self.kafka_compression,
        )

    @property
    def kafka(self) -> KafkaConnection:
        """How this service's Kafka clients connect: address, TLS and SASL identity."""
        password = self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else ""
        if self.kafka_sasl_password_file is not None:
            password = self.kafka_sasl_password_file.read_text().strip()
        return KafkaConnection(
            bootstrap=self.kafka_bootstrap,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=password,
            ca_file=self.kafka_ssl_ca_file,
            cert_file=self.kafka_ssl_cert_file,
            key_file=self.kafka_ssl_key_file,
            tuning=self.kafka_tuning,
        )

    def production_problems(self) -> list[str]:
        """Everything unsafe for production in these settings (empty when none)."""
        from shared.production import common_problems

        return common_problems(self)


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
