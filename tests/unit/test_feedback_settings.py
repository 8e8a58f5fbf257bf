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

    assert settings.feedback_token_secret.get_secret_value() == DEV_TOKEN_SECRET


def test_a_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICPULSE_FEEDBACK_TOKEN_SECRET", "short")

    with pytest.raises(ValidationError, match="at least 32 characters"):
        FeedbackSettings()


def test_the_secret_never_shows_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s" * 40
    monkeypatch.setenv("CIVICPULSE_FEEDBACK_TOKEN_SECRET", secret)

    assert secret not in repr(FeedbackSettings())
