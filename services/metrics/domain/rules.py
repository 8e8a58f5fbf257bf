"""The settings that change what events count as: service level, FCR window, surges."""

from dataclasses import dataclass, field
from datetime import timedelta

from services.metrics.domain.surges import SurgeRule


@dataclass(frozen=True, slots=True)
class Rules:
    service_level_seconds: float = 20.0
    fcr_window: timedelta = timedelta(days=7)
    surge: SurgeRule = field(default_factory=SurgeRule)
