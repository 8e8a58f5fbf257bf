"""The metrics service's settings (environment variables `CIVICPULSE_*`)."""

import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator

from services.metrics.domain import Rules, SurgeRule
from shared.settings import ServiceSettings

SERVICE = "metrics"  # its name to the shared machinery: outbox, migrations, Kafka client
DEFAULT_TARGETS_FILE = Path(__file__).with_name("targets.yaml")
TOKEN_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class Role(StrEnum):
    MANAGER = "manager"  # KPIs and reports
    OPS = "ops"  # also the pipeline views


class ApiToken(BaseModel):
    role: Role
    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="SHA-256 of the token.")


class MetricsSettings(ServiceSettings):
    http_port: int = Field(default=8004, ge=1, le=65535, description="HTTP port.")
    metrics_group_id: str = Field(
        default="civicpulse-metrics", description="Consumer group of the canonical topics."
    )
    metrics_max_batch: int = Field(
        default=5000,
        ge=1,
        le=20_000,
        description="Most events applied, and committed, per batch (fewer when fewer wait).",
    )
    metrics_rebuild_batch: int = Field(
        default=20_000,
        ge=100,
        le=100_000,
        description="Events a rebuild applies per transaction.",
    )
    metrics_api_tokens: dict[str, ApiToken] = Field(
        default_factory=dict,
        description='JSON object: token name → {"role": "manager"|"ops", "hash": '
        '"sha256:<hex>"}. Make one with `python -m services.metrics new-api-token NAME ROLE`.',
    )
    metrics_targets_file: Path = Field(
        default=DEFAULT_TARGETS_FILE, description="YAML file of KPI targets per service area."
    )
    metrics_amber_tolerance: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="A KPI missing its target by at most this share of the target is amber.",
    )
    metrics_minimum_sample: int = Field(
        default=30,
        ge=0,
        description="Fewer observations (denominator) than this: 'insufficient_data', no colour.",
    )
    metrics_service_level_seconds: float = Field(
        default=20, gt=0, description="Service level: calls answered within this many seconds."
    )
    metrics_fcr_window_days: int = Field(
        default=7, ge=0, le=90, description="Re-contact window of first contact resolution."
    )
    metrics_surge_window_days: int = Field(
        default=28, ge=7, le=365, description="Days of baseline before the day checked."
    )
    metrics_surge_k: float = Field(
        default=3.0, ge=0, description="Surge: count above baseline mean + k standard deviations."
    )
    metrics_surge_ratio: float = Field(
        default=2.0, ge=1, description="Surge: count above baseline mean times this ratio."
    )
    metrics_surge_minimum: int = Field(
        default=20, ge=1, description="Surge: count above this, whatever the baseline."
    )
    metrics_oidc_issuer: str = Field(
        default="",
        description="OIDC issuer whose access tokens people sign in with, e.g. "
        "https://login.microsoftonline.com/<tenant>/v2.0 (empty: static tokens only).",
    )
    metrics_oidc_audience: str = Field(
        default="", description="Audience (aud) the access tokens must name: the API's id."
    )
    metrics_oidc_jwks_url: str = Field(
        default="",
        description="The provider's JWKS address, e.g. "
        "https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys.",
    )
    metrics_oidc_roles_claim: str = Field(
        default="roles", description="Claim holding the user's roles (Entra ID: roles)."
    )
    metrics_oidc_role_map: dict[str, Role] = Field(
        default_factory=lambda: {"manager": Role.MANAGER, "ops": Role.OPS},
        description="JSON object: value in the roles claim -> CivicPulse role, e.g. "
        '{"CivicPulse.Manager": "manager", "CivicPulse.Ops": "ops"}.',
    )
    metrics_oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256"],
        description="Signature algorithms accepted on access tokens.",
    )
    metrics_oidc_leeway_seconds: float = Field(
        default=60, ge=0, le=300, description="Clock skew allowed on exp and nbf."
    )
    metrics_refresh_seconds: float = Field(
        default=5.0, gt=0, le=300, description="How often the Prometheus gauges re-read the state."
    )
    metrics_api_pool_size: int = Field(
        default=8,
        ge=1,
        le=100,
        description="PostgreSQL connections kept open for the HTTP API's reads, apart from "
        "the consumer's.",
    )
    metrics_complaints_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="Base URL of the complaints service, whose worklist gives the dashboard's "
        "complaints due this week.",
    )
    metrics_complaints_api_key: SecretStr | None = Field(
        default=None,
        description="The dashboard's API key on the complaints service "
        "(a read-only key: one of CIVICPULSE_COMPLAINTS_READ_API_KEYS).",
    )
    metrics_feedback_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="Base URL of the feedback service, which keeps survey comments; the "
        "dashboard's Satisfaction page reads the latest there.",
    )
    metrics_feedback_api_key: SecretStr | None = Field(
        default=None,
        description="The dashboard's API key on the feedback service "
        "(one of CIVICPULSE_FEEDBACK_API_KEYS).",
    )

    @field_validator("metrics_api_tokens")
    @classmethod
    def _token_names(cls, tokens: dict[str, ApiToken]) -> dict[str, ApiToken]:
        for name in tokens:
            if not TOKEN_NAME.fullmatch(name):
                raise ValueError(f"token name {name!r}: use a-z, 0-9, '_' or '-', at most 64")
        return tokens

    @property
    def rules(self) -> Rules:
        return Rules(
            service_level_seconds=self.metrics_service_level_seconds,
            fcr_window=timedelta(days=self.metrics_fcr_window_days),
            surge=SurgeRule(
                window_days=self.metrics_surge_window_days,
                k=self.metrics_surge_k,
                ratio=self.metrics_surge_ratio,
                minimum=self.metrics_surge_minimum,
            ),
        )
