"""Feedback's records as its store reads and writes them."""

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import asyncpg

from services.feedback.notifications import ContactRoute
from shared.events.vocabulary import CaseType, Channel, ComplaintProcedure


@dataclass(frozen=True, slots=True)
class SurveyRequest:
    request_id: str
    case_type: CaseType
    case_id: str
    customer_ref: str
    service_area: str
    channel: Channel
    resolved_at: datetime
    send_at: datetime
    status: str
    requested_at: datetime | None = None
    expires_at: datetime | None = None
    answered_at: datetime | None = None
    cancel_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ComplaintFacts:
    complaint_id: str
    customer_ref: str | None
    channel: Channel
    service_area: str
    procedure: ComplaintProcedure
    contact_id: str | None
    withdrawn: bool


@dataclass
class CustomerState:
    """What decisions read about a customer, loaded once per batch."""

    opted_out: bool
    route: ContactRoute | None
    surveyed_resolutions: list[datetime] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Suppression:
    event_id: UUID
    case_type: CaseType
    case_id: str
    reason: str
    decided_at: datetime


def complaint_facts(row: asyncpg.Record) -> ComplaintFacts:
    return ComplaintFacts(
        complaint_id=row["complaint_id"],
        customer_ref=row["customer_ref"],
        channel=Channel(row["channel"]),
        service_area=row["service_area"],
        procedure=ComplaintProcedure(row["procedure"]),
        contact_id=row["contact_id"],
        withdrawn=row["withdrawn"],
    )


def survey_request(row: asyncpg.Record) -> SurveyRequest:
    return SurveyRequest(
        **{**dict(row), "case_type": CaseType(row["case_type"]), "channel": Channel(row["channel"])}
    )
