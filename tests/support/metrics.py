"""Builders of canonical events and a running metrics service, for the metrics tests."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
from aiokafka import TopicPartition
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.metrics.app import create_app
from services.metrics.settings import ApiToken, MetricsSettings, Role
from shared.api_keys import hash_api_key
from shared.events import Event
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintAcknowledgedPayload,
    ComplaintClosed,
    ComplaintClosedPayload,
    ComplaintDeadlineBreached,
    ComplaintDeadlineBreachedPayload,
    ComplaintEscalated,
    ComplaintEscalatedPayload,
    ComplaintEscalationRequested,
    ComplaintEscalationRequestedPayload,
    ComplaintEvent,
    ComplaintOpened,
    ComplaintOpenedPayload,
    ComplaintReferredToOmbudsman,
    ComplaintReferredToOmbudsmanPayload,
    ComplaintResponded,
    ComplaintRespondedPayload,
    ComplaintWithdrawn,
    ComplaintWithdrawnPayload,
)
from shared.events.contacts import (
    CallAbandoned,
    CallAbandonedPayload,
    ContactReceived,
    ContactReceivedPayload,
    ContactResolved,
    ContactResolvedPayload,
    ContactTransferred,
    ContactTransferredPayload,
    MysteryShopAssessed,
    MysteryShopAssessedPayload,
)
from shared.events.feedback import (
    SatisfactionExpired,
    SatisfactionRequested,
    SatisfactionRequestedPayload,
    SatisfactionResponded,
    SatisfactionRespondedPayload,
    SurveyCase,
)
from shared.events.vocabulary import (
    CaseType,
    Channel,
    ComplaintOutcome,
    ComplaintProcedure,
    ContactKind,
    DeadlineKind,
    Resolved,
)
from shared.topics import CANONICAL_TOPICS
from tests.support.kafka import end_offsets, group_at

MANAGER_TOKEN = "test-manager-token-0123456789"
OPS_TOKEN = "test-ops-token-0123456789"
TOKENS = {
    "managers": ApiToken(role=Role.MANAGER, hash=hash_api_key(MANAGER_TOKEN)),
    "operations": ApiToken(role=Role.OPS, hash=hash_api_key(OPS_TOKEN)),
}
MANAGER = {"Authorization": f"Bearer {MANAGER_TOKEN}"}
OPS = {"Authorization": f"Bearer {OPS_TOKEN}"}


def utc_at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


class Events:
    """Builds events with a common prefix for ids, so runs never collide."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"t{uuid.uuid4().hex[:8]}"

    def id(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def received(
        self,
        name: str,
        when: datetime,
        *,
        channel: Channel,
        area: str,
        kind: ContactKind = ContactKind.ENQUIRY,
        customer: str | None = None,
        resolved: bool = False,
        transfers: int = 0,
        wait: float | None = None,
    ) -> ContactReceived:
        return ContactReceived(
            contact_id=self.id(name),
            occurred_at=when,
            source="test",
            payload=ContactReceivedPayload(
                channel=channel,
                service_area=area,
                kind=kind,
                customer_ref=self.id(customer) if customer else None,
                transfers=transfers,
                resolved_at_first_contact=resolved,
                wait_seconds=wait,
            ),
        )

    def transferred(self, name: str, when: datetime, *, area: str) -> ContactTransferred:
        return ContactTransferred(
            contact_id=self.id(name),
            occurred_at=when,
            source="test",
            payload=ContactTransferredPayload(
                from_team="reception", to_team=area, service_area=area
            ),
        )

    def resolved(
        self, name: str, when: datetime, *, channel: Channel, area: str
    ) -> ContactResolved:
        return ContactResolved(
            contact_id=self.id(name),
            occurred_at=when,
            source="test",
            payload=ContactResolvedPayload(
                channel=channel, service_area=area, kind=ContactKind.ENQUIRY
            ),
        )

    def abandoned(self, name: str, when: datetime, *, area: str, wait: float) -> CallAbandoned:
        return CallAbandoned(
            contact_id=self.id(name),
            occurred_at=when,
            source="test",
            payload=CallAbandonedPayload(service_area=area, wait_seconds=wait),
        )

    def mystery(
        self, name: str, when: datetime, *, channel: Channel, area: str, scores: dict[str, int]
    ) -> MysteryShopAssessed:
        return MysteryShopAssessed(
            contact_id=self.id(name),
            occurred_at=when,
            source="test",
            payload=MysteryShopAssessedPayload(channel=channel, service_area=area, scores=scores),
        )

    def complaint(
        self, name: str, when: datetime, event: type[ComplaintEvent], **payload: Any
    ) -> Event:
        payload_types: dict[type[ComplaintEvent], Any] = {
            ComplaintOpened: ComplaintOpenedPayload,
            ComplaintAcknowledged: ComplaintAcknowledgedPayload,
            ComplaintResponded: ComplaintRespondedPayload,
            ComplaintEscalationRequested: ComplaintEscalationRequestedPayload,
            ComplaintEscalated: ComplaintEscalatedPayload,
            ComplaintDeadlineBreached: ComplaintDeadlineBreachedPayload,
            ComplaintReferredToOmbudsman: ComplaintReferredToOmbudsmanPayload,
            ComplaintClosed: ComplaintClosedPayload,
            ComplaintWithdrawn: ComplaintWithdrawnPayload,
        }
        # Events not listed: the payload model the event declares.
        payload_type: Any = payload_types.get(event) or event.model_fields["payload"].annotation
        return event.model_validate(
            {
                "complaint_id": self.id(name),
                "occurred_at": when,
                "source": "civicpulse-complaints",
                "payload": payload_type(**payload),
            }
        )

    def survey_requested(
        self,
        name: str,
        when: datetime,
        *,
        case: str,
        case_type: CaseType,
        channel: Channel,
        area: str,
    ) -> SatisfactionRequested:
        return SatisfactionRequested(
            request_id=self.id(name),
            occurred_at=when,
            source="civicpulse-feedback",
            payload=SatisfactionRequestedPayload(
                case_type=case_type,
                case_id=self.id(case),
                service_area=area,
                channel=channel,
                customer_ref=self.id("survey-customer"),
                expires_at=when + timedelta(days=14),
            ),
        )

    def survey_answered(
        self,
        name: str,
        when: datetime,
        *,
        case: str,
        case_type: CaseType,
        channel: Channel,
        area: str,
        overall: int,
        ease: int,
        comment_ref: str | None = None,
    ) -> SatisfactionResponded:
        return SatisfactionResponded(
            request_id=self.id(name),
            occurred_at=when,
            source="civicpulse-feedback",
            payload=SatisfactionRespondedPayload(
                case_type=case_type,
                case_id=self.id(case),
                service_area=area,
                channel=channel,
                overall=overall,
                ease=ease,
                resolved=Resolved.YES,
                comment_ref=comment_ref,
            ),
        )

    def survey_expired(
        self,
        name: str,
        when: datetime,
        *,
        case: str,
        case_type: CaseType,
        channel: Channel,
        area: str,
    ) -> SatisfactionExpired:
        return SatisfactionExpired(
            request_id=self.id(name),
            occurred_at=when,
            source="civicpulse-feedback",
            payload=SurveyCase(
                case_type=case_type, case_id=self.id(case), service_area=area, channel=channel
            ),
        )


def known_day(events: Events, day: date) -> list[Event]:
    """A day of contacts, complaints and survey answers whose KPIs are worked out by hand
    in tests/integration/test_metrics_kpis.py."""
    e = events
    phone, web, visit = Channel.PHONE, Channel.WEB, Channel.FACE_TO_FACE
    opened, ack, responded = ComplaintOpened, ComplaintAcknowledged, ComplaintResponded
    corporate = ComplaintProcedure.CORPORATE
    return [
        # contacts
        e.received(
            "c1",
            utc_at(day, 9),
            channel=phone,
            area="planning",
            customer="a",
            resolved=True,
            wait=10,
        ),
        e.received(
            "c2",
            utc_at(day, 9, 5),
            channel=phone,
            area="planning",
            kind=ContactKind.SERVICE_REQUEST,
            customer="b",
            resolved=True,
            transfers=2,
            wait=30,
        ),
        e.received(
            "c3", utc_at(day, 10), channel=web, area="planning", customer="c", resolved=True
        ),
        e.received("c4", utc_at(day, 15), channel=web, area="planning", customer="c"),
        e.received("c5", utc_at(day, 11), channel=visit, area="waste", customer="a", resolved=True),
        e.received(
            "c6",
            utc_at(day, 12),
            channel=phone,
            area="waste",
            kind=ContactKind.COMPLIMENT,
            customer="d",
            wait=5,
        ),
        e.received(
            "c7",
            utc_at(day, 13),
            channel=phone,
            area="planning",
            customer="e",
            resolved=True,
            wait=50,
        ),
        e.transferred("c7", utc_at(day, 13, 5), area="planning"),
        e.resolved("c3", utc_at(day, 10, 10), channel=web, area="planning"),
        e.abandoned("a1", utc_at(day, 14), area="planning", wait=40),
        e.abandoned("a2", utc_at(day, 14, 30), area="waste", wait=5),
        e.mystery(
            "m1",
            utc_at(day, 16),
            channel=phone,
            area="planning",
            scores={"greeting": 80, "accuracy": 100},
        ),
        e.mystery("m2", utc_at(day, 16, 30), channel=web, area="planning", scores={"greeting": 70}),
        # complaints: k1 through both stages, k2 acknowledged late, k3 statutory
        e.complaint("k1", utc_at(day, 9), opened, service_area="planning", channel=web),
        e.complaint("k1", utc_at(day, 9, 30), ack, service_area="planning", stage=1),
        e.complaint(
            "k1",
            utc_at(day, 10),
            responded,
            service_area="planning",
            stage=1,
            outcome=ComplaintOutcome.UPHELD,
            responder="s1",
        ),
        e.complaint(
            "k1",
            utc_at(day, 11),
            ComplaintEscalationRequested,
            service_area="planning",
            from_stage=1,
        ),
        e.complaint(
            "k1", utc_at(day, 11, 30), ComplaintEscalated, service_area="planning", to_stage=2
        ),
        e.complaint("k1", utc_at(day, 12), ack, service_area="planning", stage=2),
        e.complaint(
            "k1",
            utc_at(day, 13),
            responded,
            service_area="planning",
            stage=2,
            outcome=ComplaintOutcome.PARTLY_UPHELD,
            responder="s2",
        ),
        e.complaint(
            "k1",
            utc_at(day, 14),
            ComplaintReferredToOmbudsman,
            service_area="planning",
            ombudsman="local_government",
        ),
        e.complaint(
            "k2", utc_at(day, 9), opened, service_area="waste", channel=phone, procedure=corporate
        ),
        e.complaint(
            "k2",
            utc_at(day, 10),
            ComplaintDeadlineBreached,
            service_area="waste",
            stage=1,
            deadline=DeadlineKind.ACKNOWLEDGE,
            due_date=day,
        ),
        e.complaint("k2", utc_at(day, 11), ack, service_area="waste", stage=1),
        e.complaint(
            "k2",
            utc_at(day, 12),
            responded,
            service_area="waste",
            stage=1,
            outcome=ComplaintOutcome.NOT_UPHELD,
            responder="s3",
        ),
        e.complaint("k2", utc_at(day, 13), ComplaintClosed, service_area="waste", final_stage=1),
        e.complaint(
            "k3",
            utc_at(day, 9),
            opened,
            service_area="adult_social_care",
            channel=phone,
            procedure=ComplaintProcedure.ADULT_SOCIAL_CARE,
            statutory=True,
        ),
        # satisfaction
        e.survey_requested(
            "s1",
            utc_at(day, 17),
            case="c1",
            case_type=CaseType.CONTACT,
            channel=phone,
            area="planning",
        ),
        e.survey_requested(
            "s2",
            utc_at(day, 17),
            case="c3",
            case_type=CaseType.CONTACT,
            channel=web,
            area="planning",
        ),
        e.survey_requested(
            "s3",
            utc_at(day, 17),
            case="k2",
            case_type=CaseType.COMPLAINT,
            channel=phone,
            area="waste",
        ),
        e.survey_requested(
            "s4",
            utc_at(day, 17),
            case="c5",
            case_type=CaseType.CONTACT,
            channel=visit,
            area="waste",
        ),
        e.survey_answered(
            "s1",
            utc_at(day, 18),
            case="c1",
            case_type=CaseType.CONTACT,
            channel=phone,
            area="planning",
            overall=5,
            ease=7,
        ),
        e.survey_answered(
            "s2",
            utc_at(day, 18),
            case="c3",
            case_type=CaseType.CONTACT,
            channel=web,
            area="planning",
            overall=3,
            ease=4,
        ),
        e.survey_answered(
            "s3",
            utc_at(day, 18),
            case="k2",
            case_type=CaseType.COMPLAINT,
            channel=phone,
            area="waste",
            overall=4,
            ease=2,
        ),
        e.survey_expired(
            "s4",
            utc_at(day, 20),
            case="c5",
            case_type=CaseType.CONTACT,
            channel=visit,
            area="waste",
        ),
    ]


@dataclass
class RunningMetrics:
    app: FastAPI
    client: httpx.AsyncClient
    registry: CollectorRegistry
    settings: MetricsSettings
    start_offsets: dict[TopicPartition, int]


@asynccontextmanager
async def running_metrics(
    kafka_bootstrap: str, database_url: str, now: datetime, **overrides: Any
) -> AsyncIterator[RunningMetrics]:
    """The metrics service in-process, its group placed at the current end of every topic."""
    start = await end_offsets(kafka_bootstrap, [t.name for t in CANONICAL_TOPICS])
    settings = MetricsSettings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        metrics_group_id=await group_at(kafka_bootstrap, start, "test-metrics"),
        metrics_api_tokens=TOKENS,
        metrics_refresh_seconds=0.5,
        **overrides,
    )
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry, clock=lambda: now)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
            yield RunningMetrics(app, client, registry, settings, start)
