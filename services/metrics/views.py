"""What the metrics HTTP API returns: KPIs, series, the committee view, the pipeline.

Models whose fields match a report row or a store record read it by attribute
(`from_attributes`), so a field is named once, in the dataclass it comes from.
"""

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from services.metrics.domain import Standing
from services.metrics.periods import Period
from services.metrics.store import Surge
from shared.events.vocabulary import Channel

SERVICE_LEVEL_METHOD = (
    "Service level = calls answered within N seconds / calls offered (answered + abandoned). "
    "Abandoned calls count as failures whatever their wait; answered calls with no recorded "
    "wait count as offered but not within N."
)


class KpiValue(BaseModel):
    """One KPI over a period (read from a `report.KpiRow`)."""

    model_config = ConfigDict(from_attributes=True)

    kpi: str
    title: str
    unit: str = Field(description="ratio (0 to 1), seconds, count, score or transfers.")
    direction: str = Field(description="higher_is_better, lower_is_better or neither.")
    value: float | None = Field(description="null when the denominator is 0: no data.")
    numerator: float
    denominator: float | None = Field(description="null for counts.")
    target: float | str | None = Field(description="A number, 'TBA' (no RAG) or null.")
    rag: str | None = Field(description="green, amber, red, insufficient_data, or null.")
    previous_value: float | None
    change: float | None = Field(description="value - previous_value.")
    change_percent: float | None = Field(description="Relative change, in percent.")
    trend: str | None = Field(description="improving/worsening/unchanged, or up/down.")
    provisional: bool = Field(description="FCR only: the re-contact window has not passed.")


class OpenComplaintsCount(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    scope: str = Field(description="corporate (the Code) or statutory (social care).")
    stage: int
    count: int


class KpisResponse(BaseModel):
    period: Period | None
    label: str
    start: date
    end: date
    partial: bool = Field(
        description="The period is still running: counted from `start` to today, and "
        "compared with as many days (`compared_days`) from `previous_start`."
    )
    compared_days: int = Field(description="Days counted, from `start`.")
    previous_start: date
    previous_end: date = Field(description="The last day of the fair previous span.")
    service_area: str | None
    channel: Channel | None
    generation: int
    service_level_seconds: float
    service_level_method: str
    kpis: list[KpiValue]
    open_complaints: list[OpenComplaintsCount] = Field(description="Now, not per period.")


class SeriesPoint(BaseModel):
    """One period of a chart (read from a `queries.Point`)."""

    model_config = ConfigDict(from_attributes=True)

    label: str
    start: date
    end: date
    value: float | None
    numerator: float
    denominator: float | None
    provisional: bool
    partial: bool = Field(description="The period is still running: counted up to today.")


class SeriesResponse(BaseModel):
    kpi: str
    title: str
    unit: str
    period: Period
    service_area: str | None
    channel: Channel | None
    points: list[SeriesPoint]


class ServiceStandingModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    service_area: str
    standing: Standing
    kpis: list[KpiValue]


class CommitteeResponse(BaseModel):
    quarter: str = Field(description="The financial quarter, as `quarter=` accepts it.")
    financial_quarter: str = Field(description='As councils name it: "Q1 2026/27".')
    start: date
    end: date
    partial: bool
    compared_days: int
    previous_start: date
    previous_end: date
    groups: dict[Standing, list[ServiceStandingModel]]


class TopicPipeline(BaseModel):
    topic: str
    events_applied: int
    last_event_recorded_at: datetime
    last_event_age_seconds: float
    last_applied_at: datetime


class PipelineResponse(BaseModel):
    generation: int
    topics: list[TopicPipeline]
    surges_last_7_days: list[Surge] = Field(description="As the store records them.")


class ReportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    HTML = "html"
    PDF = "pdf"
