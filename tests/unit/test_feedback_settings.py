"""Feedback refuses to start with the development token secret in production."""

import pytest
from pydantic import ValidationError

from services.feedback.settings import DEV_TOKEN_SECRET, FeedbackSettings


def test_the_development_secret_is_refused_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIVICPULSE_FEEDBACK_TOKEN_SECRET", raising=False)
    monkeypatch.delenv("CIVICPULSE_FEEDBACK_ALLOW_DEV_SECRET", raising=False)

    with pytest.raises(ValidationError, match="development default"):
        FeedbackSettings()


def test_the_development_secret_is_allowed_when_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CIVICPULSE_FEEDBACK_TOKEN_SECRET", raising=False)
    monkeypatch.setenv("CIVICPULSE_FEEDBACK_ALLOW_DEV_SECRET", "true")

    settings = FeedbackSettings()

    assert settings.link_secrets == [DEV_TOKEN_SECRET]


def test_a_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICPULSE_FEEDBACK_TOKEN_SECRET", "short")

    with pytest.raises(ValidationError, match="at least 32 characters"):
        FeedbackSettings()


def test_the_secret_never_shows_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s" * 40
    monkeypatch.setenv("CIVICPULSE_FEEDBACK_TOKEN_SECRET", secret)

    assert secret not in repr(FeedbackSettings())


def test_a_json_list_of_secrets_is_read_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    newest, older = "n" * 20 + "ewest-secret-0123", "o" * 20 + "lder-secret-012345"
    monkeypatch.setenv("CIVICPULSE_FEEDBACK_TOKEN_SECRET", f'["{newest}", "{older}"]')

    assert FeedbackSettings().link_secrets == [newest, older]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[]", "at least 1 item"),
        ('["' + "x" * 40 + '", "short"]', "at least 32 characters"),
        ('["' + "x" * 40 + '", "' + "x" * 40 + '"]', "lists a secret twice"),
        ('["' + "x" * 40 + '"', "a JSON list of secrets"),
        ('["' + DEV_TOKEN_SECRET + '", "' + "x" * 40 + '"]', "development default"),
    ],
)
def test_a_bad_list_of_secrets_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("CIVICPULSE_FEEDBACK_TOKEN_SECRET", value)
    monkeypatch.delenv("CIVICPULSE_FEEDBACK_ALLOW_DEV_SECRET", raising=False)

    with pytest.raises(ValidationError, match=message):
        FeedbackSettings()
