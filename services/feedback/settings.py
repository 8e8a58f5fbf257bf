"""Feedback's settings (environment variables `CIVICPULSE_*`)."""

import json
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from shared.api_keys import ApiKeyHashes
from shared.page_guards import parse_rate_limit
from shared.production import callback_token_problems, secret_strength_problems
from shared.settings import (
    ServiceSettings,
    api_keys_field,
    batch_field,
    group_field,
    port_field,
)

SERVICE = "feedback"

# Only for local development: a deployment that keeps it could have its answer
# links forged, so the service refuses it unless told it is a dev machine.
DEV_TOKEN_SECRET = "civicpulse-dev-only-feedback-secret"  # noqa: S105 - documented dev default


class DefaultSecretError(ValueError):
    pass


def _secret_list(value: Any) -> Any:
    """One secret (the original form of the setting), or a JSON list of them, newest first."""
    if isinstance(value, str | SecretStr):
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not text.lstrip().startswith("["):
            return [text]
        try:
            return json.loads(text)
        except ValueError as error:
            raise ValueError(f"a JSON list of secrets, newest first: {error}") from None
    return value


# Newest first: the first signs new answer links, every one verifies (docs/production.md,
# "Rotating the answer-link secret"). NoDecode: a plain secret is not JSON.
LinkSecrets = Annotated[list[SecretStr], NoDecode, BeforeValidator(_secret_list)]


class FeedbackSettings(ServiceSettings):
    http_port: int = port_field(8003)
    feedback_group_id: str = group_field("civicpulse-feedback", consuming="the resolution consumer")
    feedback_max_batch: int = batch_field(500, handled="Events handled")
    feedback_delay_hours: float = Field(default=24.0, ge=0, le=24 * 30)
    """Hours between a case's resolution and its satisfaction request."""
    feedback_expiry_days: int = Field(default=14, ge=1, le=90)
    """Days a request can be answered once sent."""
    feedback_quiet_period_days: int = Field(default=30, ge=0, le=365)
    """A customer surveyed within this many days is not surveyed again."""
    feedback_token_secret: LinkSecrets = Field(
        default_factory=lambda: [SecretStr(DEV_TOKEN_SECRET)], min_length=1, max_length=10
    )
    """Secret that signs answer links (at least 32 characters), or a JSON list of secrets,
    newest first: the newest signs, any listed one verifies."""
    feedback_accept_sha1_links: bool = True
    """Also accept answer links signed with HMAC-SHA1 (issued before HMAC-SHA256) until they
    expire; none is issued any more."""
    feedback_allow_dev_secret: bool = False
    """Allow the built-in development token secret (never in production)."""
    feedback_rate_limit: str = "20/minute"
    """Requests per client address on the answer links' pages and API (`/surveys/...`,
    `/v1/surveys/...`), e.g. `20/minute` or `20/minute;200/hour`; counted per process."""
    feedback_public_url: str = "http://127.0.0.1:8003"
    """Base URL residents reach the survey pages at (used in answer links)."""
    feedback_api_keys: ApiKeyHashes = api_keys_field(
        service=SERVICE, caller="calling system (the CRM)", example="crm"
    )
    feedback_notify_email_template_id: str = ""
    """GOV.UK Notify template id of the survey email."""
    feedback_notify_sms_template_id: str = ""
    """GOV.UK Notify template id of the survey text message."""
    feedback_notify_api_key: SecretStr | None = None
    """GOV.UK Notify API key; only the sender process (`send`) uses it."""
    feedback_notify_base_url: str = "https://api.notifications.service.gov.uk"
    """GOV.UK Notify API address."""
    feedback_notify_callback_token: SecretStr | None = None
    """Bearer token GOV.UK Notify sends with its delivery-status callbacks
    (`POST /v1/notify/delivery-status`); without it the endpoint answers 401."""
    feedback_sender_group_id: str = group_field(
        "civicpulse-feedback-sender", consuming="the sender process on the notifications topic"
    )

    @field_validator("feedback_public_url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", url):
            raise ValueError("give an http(s) URL, e.g. https://feedback.example.gov.uk")
        return url.rstrip("/")

    @field_validator("feedback_rate_limit")
    @classmethod
    def _a_rate_limit(cls, text: str) -> str:
        parse_rate_limit(text)  # ValueError names what is wrong
        return text

    @property
    def link_secrets(self) -> list[str]:
        """The answer-link secrets, newest first."""
        return [secret.get_secret_value() for secret in self.feedback_token_secret]

    @model_validator(mode="after")
    def _refuse_the_dev_secret(self) -> "FeedbackSettings":
        secrets = self.link_secrets
        if len(set(secrets)) != len(secrets):
            raise ValueError("CIVICPULSE_FEEDBACK_TOKEN_SECRET lists a secret twice")
        if self.environment == "production":
            return self  # production_problems lists these with every other problem
        if DEV_TOKEN_SECRET in secrets and not self.feedback_allow_dev_secret:
            raise DefaultSecretError(
                "CIVICPULSE_FEEDBACK_TOKEN_SECRET is the development default: set a secret "
                "of at least 32 random characters (or CIVICPULSE_FEEDBACK_ALLOW_DEV_SECRET=true "
                "on a development machine)"
            )
        if any(len(secret) < 32 for secret in secrets):
            raise ValueError("CIVICPULSE_FEEDBACK_TOKEN_SECRET must be at least 32 characters")
        return self

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        secrets = self.link_secrets
        for number, secret in enumerate(secrets, start=1):
            # Every listed secret verifies links, so each must be as strong as the newest.
            which = "" if len(secrets) == 1 else f" (secret {number} of {len(secrets)})"
            problems += secret_strength_problems("feedback_token_secret", secret, which=which)
        if self.feedback_notify_api_key is not None:
            problems += self.template_problems()
        problems += callback_token_problems(
            "feedback_notify_callback_token",
            self.feedback_notify_callback_token,
            required=self.feedback_notify_api_key is not None,
        )
        return problems

    def sender_production_problems(self) -> list[str]:
        """The sender also needs both template ids, whether or not its key is set yet."""
        problems = super().production_problems()
        if self.feedback_notify_api_key is None:
            problems.append("CIVICPULSE_FEEDBACK_NOTIFY_API_KEY is not set")
        problems += callback_token_problems(
            "feedback_notify_callback_token", self.feedback_notify_callback_token, required=True
        )
        return [*problems, *self.template_problems()]

    def template_problems(self) -> list[str]:
        return [
            f"CIVICPULSE_FEEDBACK_NOTIFY_{kind}_TEMPLATE_ID is empty: the sender would fail "
            "every message of that kind"
            for kind, template in (
                ("EMAIL", self.feedback_notify_email_template_id),
                ("SMS", self.feedback_notify_sms_template_id),
            )
            if not template.strip()
        ]
