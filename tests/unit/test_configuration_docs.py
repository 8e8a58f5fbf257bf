"""docs/configuration.md names every setting the services read."""

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from services.complaints.settings import ComplaintsSettings
from services.feedback.settings import FeedbackSettings
from services.intake.settings import IntakeSettings
from services.metrics.settings import MetricsSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.mark.parametrize(
    "settings_class",
    [IntakeSettings, ComplaintsSettings, FeedbackSettings, MetricsSettings],
    ids=lambda cls: cls.__name__,
)
def test_every_setting_is_documented(settings_class: type[BaseSettings]) -> None:
    text = DOC.read_text()

    missing = [
        f"CIVICPULSE_{name.upper()}"
        for name in settings_class.model_fields
        if f"`CIVICPULSE_{name.upper()}`" not in text
    ]

    assert missing == []
