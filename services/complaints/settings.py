"""The complaints service's settings (environment variables `CIVICPULSE_*`)."""

from datetime import date
from enum import StrEnum

from pydantic import Field, model_validator

from shared.api_keys import ApiKeyHashes
from shared.settings import ServiceSettings

SERVICE = "complaints"


class Role(StrEnum):
    """What a signed-in person may do: read the worklist and complaints. Case actions come
    from case-management systems, with their read-write API keys."""

    READER = "reader"


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
        "`python -m services.complaints new-api-key SOURCE`. These keys may read and post "
        "case actions.",
    )
    complaints_read_api_keys: ApiKeyHashes = Field(
        default_factory=dict,
        description="The same kind of JSON object for read-only callers (the metrics "
        "dashboard): they may read the worklist and complaints, and get 403 on every write. "
        "`python -m services.complaints new-api-key --read-only SOURCE` makes one.",
    )
    complaints_oidc_issuer: str = Field(
        default="",
        description="OIDC issuer whose access tokens people sign in to the worklist with, e.g. "
        "https://login.microsoftonline.com/<tenant>/v2.0 (empty: API keys only).",
    )
    complaints_oidc_audience: str = Field(
        default="", description="Audience (aud) the access tokens must name: the API's id."
    )
    complaints_oidc_jwks_url: str = Field(default="", description="The provider's JWKS address.")
    complaints_oidc_roles_claim: str = Field(
        default="roles", description="Claim holding the user's roles (Entra ID: roles)."
    )
    complaints_oidc_role_map: dict[str, Role] = Field(
        default_factory=lambda: {"reader": Role.READER},
        description="JSON object: value in the roles claim -> complaints role (reader), e.g. "
        '{"CivicPulse.ComplaintsReader": "reader"}.',
    )
    complaints_oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256"],
        description="Signature algorithms accepted on access tokens.",
    )
    complaints_oidc_leeway_seconds: float = Field(
        default=60, ge=0, le=300, description="Clock skew allowed on exp and nbf."
    )

    @model_validator(mode="after")
    def _one_scope_per_key(self) -> "ComplaintsSettings":
        both = set(self.complaints_api_keys.values()) & set(self.complaints_read_api_keys.values())
        if both:
            raise ValueError(
                "a key is in both CIVICPULSE_COMPLAINTS_API_KEYS (read-write) and "
                "CIVICPULSE_COMPLAINTS_READ_API_KEYS (read-only): keep it in one"
            )
        return self
