"""Events the metrics service raises about the KPIs themselves."""

from datetime import date
from typing import ClassVar, Literal

from pydantic import Field

from shared.events.envelope import Event, FrozenModel
from shared.events.vocabulary import ServiceArea, Slug


class SurgeDetectedPayload(FrozenModel):
    service_area: ServiceArea
    measure: Literal["contacts", "complaints"]
    day: date = Field(description="Local (Europe/London) day of the surge.")
    count: int = Field(ge=0)
    baseline: float = Field(ge=0, description="The area's usual daily count.")
    threshold: float = Field(ge=0, description="Count above which a day is a surge.")


class SurgeDetected(Event):
    key_field: ClassVar[str] = "surge_id"
    event_type: Literal["SurgeDetected"] = "SurgeDetected"
    schema_version: Literal[1] = 1
    surge_id: str = Field(description="`<service_area>:<measure>:<first day>`; one per surge.")
    payload: SurgeDetectedPayload


class KpiTargetMissedPayload(FrozenModel):
    kpi: Slug
    service_area: ServiceArea | None = None
    period: str = Field(examples=["2026Q3", "2026-11"])
    value: float
    target: float


class KpiTargetMissed(Event):
    key_field: ClassVar[str] = "kpi_key"
    event_type: Literal["KpiTargetMissed"] = "KpiTargetMissed"
    schema_version: Literal[1] = 1
    kpi_key: str = Field(description="`<kpi>:<service_area>:<period>`.")
    payload: KpiTargetMissedPayload


METRICS_EVENTS: tuple[type[Event], ...] = (SurgeDetected, KpiTargetMissed)
