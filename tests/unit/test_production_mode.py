"""Production mode: a service refuses to start on unsafe settings, listing every problem.

Issue 12, "Production mode": with CIVICPULSE_ENVIRONMENT=production a service
refuses to start, listing every problem at once and exiting non-zero, when it
finds a known demo key, hash or secret; an http public URL; empty Notify
template ids when the sender runs; a PLAINTEXT Kafka protocol; a database URL
without sslmode=verify-full; a token secret of low entropy.
"""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from services.complaints.settings import ComplaintsSettings
from services.feedback.settings import DEV_TOKEN_SECRET, FeedbackSettings
from services.intake.settings import IntakeSettings
from services.metrics.settings import MetricsSettings
from shared.api_keys import hash_api_key
from shared.production import DEMO_HASHES, DEMO_SECRETS, UnsafeForProduction, exit_if_unsafe

ROOT = Path(__file__).resolve().parents[2]
SAFE_DATABASE_URL = (
    "postgresql://intake:s3cret@db.council.example:5432/civicpulse"
    "?sslmode=verify-full&sslrootcert=/etc/civicpulse/db-ca.crt"
)


def safe(**overrides: Any) -> dict[str, Any]:
    """Settings a production deployment could run with."""
    values: dict[str, Any] = {
        "environment": "production",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": "intake",
        "kafka_sasl_password": SecretStr(secrets.token_urlsafe(24)),
        "database_url": SAFE_DATABASE_URL,
        "metrics_port": 9100,
    }
    return values | overrides


def safe_feedback(**overrides: Any) -> FeedbackSettings:
    values = safe(
        feedback_token_secret=SecretStr(secrets.token_urlsafe(48)),
        feedback_public_url="https://feedback.council.example",
        feedback_notify_api_key=SecretStr("key-" + secrets.token_hex(16)),
        feedback_notify_email_template_id="6f1b2c3d-email",
        feedback_notify_sms_template_id="7a8b9c0d-sms",
        feedback_notify_callback_token=SecretStr(secrets.token_urlsafe(48)),
    )
    return FeedbackSettings(**(values | overrides))


def test_safe_settings_have_no_problems() -> None:
    """The refusals below come from the one setting each changes, not from the baseline."""
    assert IntakeSettings(**safe()).production_problems() == []
    assert safe_feedback().production_problems() == []
    assert safe_feedback().sender_production_problems() == []
    tokens = {"ops": {"role": "ops", "hash": hash_api_key(secrets.token_urlsafe(32))}}
    assert MetricsSettings(**safe(metrics_api_tokens=tokens)).production_problems() == []


def test_demo_api_key_hash_is_refused() -> None:
    settings = IntakeSettings(**safe(intake_api_keys={"crm": DEMO_HASHES[0]}))
    assert settings.production_problems() == [
        "CIVICPULSE_INTAKE_API_KEYS holds the hash of a demo key published in .env.example: "
        "make a new key with the service's new-api-key (or new-api-token) command"
    ]


def test_demo_metrics_token_is_refused() -> None:
    tokens = {"managers": {"role": "manager", "hash": DEMO_HASHES[0]}}
    problems = MetricsSettings(**safe(metrics_api_tokens=tokens)).production_problems()
    assert len(problems) == 1
    assert problems[0].startswith("CIVICPULSE_METRICS_API_TOKENS holds the hash of a demo key")


def test_demo_token_secret_and_dev_default_are_refused() -> None:
    for demo in ("demo-token-secret-change-me-0123456789abcdef", DEV_TOKEN_SECRET):
        problems = safe_feedback(feedback_token_secret=SecretStr(demo)).production_problems()
        assert (
            "CIVICPULSE_FEEDBACK_TOKEN_SECRET holds a demo secret published in .env.example or "
            "as the development default: replace it with a random one"
        ) in problems


def test_demo_database_password_is_refused() -> None:
    url = SAFE_DATABASE_URL.replace("s3cret", "demo-postgres-password-change-me")
    problems = ComplaintsSettings(**safe(database_url=url)).production_problems()
    assert problems == [
        "CIVICPULSE_DATABASE_URL holds a demo secret published in .env.example or as the "
        "development default: replace it with a random one"
    ]


def test_http_public_url_is_refused() -> None:
    problems = safe_feedback(
        feedback_public_url="http://feedback.council.example"
    ).production_problems()
    assert problems == [
        "CIVICPULSE_FEEDBACK_PUBLIC_URL is an http URL (http://feedback.council.example): use "
        "https so links and tokens are not sent in clear"
    ]


def test_empty_notify_template_ids_are_refused_when_the_sender_runs() -> None:
    settings = safe_feedback(
        feedback_notify_sms_template_id="", feedback_notify_email_template_id=""
    )
    assert settings.sender_production_problems() == [
        "CIVICPULSE_FEEDBACK_NOTIFY_EMAIL_TEMPLATE_ID is empty: the sender would fail every "
        "message of that kind",
        "CIVICPULSE_FEEDBACK_NOTIFY_SMS_TEMPLATE_ID is empty: the sender would fail every "
        "message of that kind",
    ]
    # Without a Notify key the service itself only hands off; the sender is refused.
    no_sender = safe_feedback(feedback_notify_api_key=None, feedback_notify_sms_template_id="")
    assert no_sender.production_problems() == []
    assert "CIVICPULSE_FEEDBACK_NOTIFY_API_KEY is not set" in no_sender.sender_production_problems()


def test_a_missing_notify_callback_token_is_refused_when_the_sender_runs() -> None:
    """Issue 12, item 8: Notify's callback "is accepted with its bearer token"."""
    settings = safe_feedback(feedback_notify_callback_token=None)
    expected = (
        "CIVICPULSE_FEEDBACK_NOTIFY_CALLBACK_TOKEN is not set: GOV.UK Notify's "
        "delivery-status callbacks would be refused, so permanent failures would never mark "
        "a contact route bad"
    )
    assert settings.sender_production_problems() == [expected]
    assert settings.production_problems() == [expected]  # the service holds a Notify key
    handing_off = safe_feedback(
        feedback_notify_callback_token=None, feedback_notify_api_key=None
    ).production_problems()
    assert handing_off == []  # no sender: no callbacks to take


def test_a_weak_or_demo_notify_callback_token_is_refused() -> None:
    weak = safe_feedback(feedback_notify_callback_token=SecretStr("ab" * 20))
    demo = safe_feedback(
        feedback_notify_callback_token=SecretStr("demo-token-secret-change-me-0123456789abcdef")
    )

    assert [p.split(" (")[0] for p in weak.sender_production_problems()] == [
        "CIVICPULSE_FEEDBACK_NOTIFY_CALLBACK_TOKEN has low entropy"
    ]
    assert (
        "CIVICPULSE_FEEDBACK_NOTIFY_CALLBACK_TOKEN holds a demo secret published in "
        ".env.example or as the development default: replace it with a random one"
    ) in demo.sender_production_problems()


def test_plaintext_kafka_is_refused() -> None:
    settings = IntakeSettings(**safe(kafka_security_protocol="PLAINTEXT"))
    assert settings.production_problems() == [
        "CIVICPULSE_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: use SASL_SSL (or SSL with a client "
        "certificate) so records are encrypted and clients authenticated"
    ]


def test_sasl_without_credentials_is_refused() -> None:
    settings = IntakeSettings(**safe(kafka_sasl_username="", kafka_sasl_password=None))
    problems = settings.production_problems()
    assert len(problems) == 1
    assert "CIVICPULSE_KAFKA_SASL_USERNAME or its password" in problems[0]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://intake:s3cret@db.council.example/civicpulse",
        "postgresql://intake:s3cret@db.council.example/civicpulse?sslmode=require",
        "postgresql://intake:s3cret@db.council.example/civicpulse?sslmode=verify-ca",
    ],
)
def test_database_url_without_verify_full_is_refused(url: str) -> None:
    problems = IntakeSettings(**safe(database_url=url)).production_problems()
    assert problems == [
        "CIVICPULSE_DATABASE_URL lacks sslmode=verify-full: add "
        "?sslmode=verify-full&sslrootcert=/path/to/ca.crt so the connection is encrypted and "
        "the server's certificate and name are checked"
    ]


@pytest.mark.parametrize("secret", ["a" * 40, "abcd" * 10, "0123456789" * 4, "x1" * 32])
def test_low_entropy_token_secret_is_refused(secret: str) -> None:
    """Each passes the 32-character length rule; none is anywhere near random."""
    problems = safe_feedback(feedback_token_secret=SecretStr(secret)).production_problems()
    assert len(problems) == 1
    assert re.fullmatch(
        r"CIVICPULSE_FEEDBACK_TOKEN_SECRET has low entropy \(about \d+ bits, at least 100 "
        r"needed\): make one with `python -m services.feedback new-token-secret`",
        problems[0],
    )


def test_short_token_secret_is_refused_in_the_same_list() -> None:
    problems = safe_feedback(feedback_token_secret=SecretStr("short")).production_problems()
    assert problems == ["CIVICPULSE_FEEDBACK_TOKEN_SECRET is shorter than 32 characters"]


def test_every_listed_answer_link_secret_is_checked() -> None:
    """Every secret in the rotation list verifies links, so each is held to the same rules."""
    strong = secrets.token_urlsafe(48)
    problems = safe_feedback(
        feedback_token_secret=[strong, "abcd" * 10, "short"]
    ).production_problems()
    assert len(problems) == 2
    assert problems[0].startswith(
        "CIVICPULSE_FEEDBACK_TOKEN_SECRET (secret 2 of 3) has low entropy"
    )
    assert problems[1] == (
        "CIVICPULSE_FEEDBACK_TOKEN_SECRET (secret 3 of 3) is shorter than 32 characters"
    )


def test_a_demo_secret_kept_as_an_older_answer_link_secret_is_refused() -> None:
    demo = "demo-token-secret-change-me-0123456789abcdef"
    problems = safe_feedback(
        feedback_token_secret=[secrets.token_urlsafe(48), demo]
    ).production_problems()
    assert problems == [
        "CIVICPULSE_FEEDBACK_TOKEN_SECRET holds a demo secret published in .env.example or "
        "as the development default: replace it with a random one"
    ]


def test_every_problem_is_listed_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    settings = FeedbackSettings(
        environment="production",
        feedback_token_secret=SecretStr(DEV_TOKEN_SECRET),
        feedback_api_keys={"crm": DEMO_HASHES[0]},
    )
    with pytest.raises(UnsafeForProduction) as refusal:
        exit_if_unsafe(settings, "feedback send", settings.sender_production_problems())
    assert refusal.value.code == 2
    message = capsys.readouterr().err
    for variable in (
        "CIVICPULSE_FEEDBACK_TOKEN_SECRET holds a demo secret",
        "CIVICPULSE_FEEDBACK_API_KEYS holds the hash of a demo key",
        "CIVICPULSE_FEEDBACK_PUBLIC_URL is an http URL",
        "CIVICPULSE_KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        "CIVICPULSE_DATABASE_URL lacks sslmode=verify-full",
        "CIVICPULSE_FEEDBACK_NOTIFY_API_KEY is not set",
        "CIVICPULSE_FEEDBACK_NOTIFY_EMAIL_TEMPLATE_ID is empty",
        "CIVICPULSE_FEEDBACK_NOTIFY_SMS_TEMPLATE_ID is empty",
        "CIVICPULSE_FEEDBACK_NOTIFY_CALLBACK_TOKEN is not set",
    ):
        assert variable in message
    assert "CIVICPULSE_METRICS_PORT is not set" in message
    assert "10 problem(s)" in message


def test_development_is_the_default_and_checks_nothing() -> None:
    settings = FeedbackSettings(feedback_allow_dev_secret=True)
    assert settings.environment == "development"
    exit_if_unsafe(settings, "feedback")  # returns: README's commands keep working


def test_every_demo_value_in_env_example_is_known() -> None:
    """The refusal list cannot drift from what .env.example publishes."""
    text = (ROOT / ".env.example").read_text()
    for name, value in re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.MULTILINE):
        if name == "CIVICPULSE_LOG_LEVEL":
            continue
        hashes = re.findall(r"sha256:[0-9a-f]{64}", value)
        assert hashes or value in DEMO_SECRETS, name
        assert all(h in DEMO_HASHES for h in hashes), name
    for key in re.findall(r"hash of the key `([^`]+)`", text):
        assert hash_api_key(key) in DEMO_HASHES


@pytest.mark.parametrize("service", ["intake", "complaints", "metrics", "feedback"])
def test_service_process_refuses_to_start(service: str) -> None:
    """The real entry point exits non-zero with the list, before connecting to anything."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICPULSE_")}
    env |= {
        "CIVICPULSE_ENVIRONMENT": "production",
        "CIVICPULSE_FEEDBACK_TOKEN_SECRET": "demo-token-secret-change-me-0123456789abcdef",
        "CIVICPULSE_DATABASE_URL": "postgresql://civicpulse:p@127.0.0.1:9/civicpulse",
    }
    done = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"{service}: refusing to start with CIVICPULSE_ENVIRONMENT=production" in done.stderr
    assert "CIVICPULSE_KAFKA_SECURITY_PROTOCOL is PLAINTEXT" in done.stderr
    assert "CIVICPULSE_DATABASE_URL lacks sslmode=verify-full" in done.stderr


def test_metrics_on_the_api_port_is_refused() -> None:
    """Issue 12, "Operational endpoints": /metrics on a separate internal port."""
    assert IntakeSettings(**safe(metrics_port=None)).production_problems() == [
        "CIVICPULSE_METRICS_PORT is not set: /metrics (per-area KPIs, breach counts) would be "
        "served without authentication on the API port"
    ]


def test_migration_database_url_without_verify_full_is_refused() -> None:
    owner = "postgresql://civicpulse_owner:s3cret@db.council.example/civicpulse?sslmode=require"
    problems = IntakeSettings(**safe(migration_database_url=owner)).production_problems()
    assert problems == [
        "CIVICPULSE_MIGRATION_DATABASE_URL lacks sslmode=verify-full: add "
        "?sslmode=verify-full&sslrootcert=/path/to/ca.crt so the connection is encrypted and "
        "the server's certificate and name are checked"
    ]


def test_a_missing_kafka_password_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "kafka-password"
    settings = IntakeSettings(**safe(kafka_sasl_password=None, kafka_sasl_password_file=missing))
    assert settings.production_problems() == [
        f"CIVICPULSE_KAFKA_SASL_PASSWORD_FILE {missing} is not a readable file"
    ]
