"""What each event adds to the aggregates."""

from collections import Counter
from datetime import UTC, date, datetime

from services.metrics.domain.measures import (
    Cell,
    complaint_increments,
    is_fcr_candidate,
    stateless_increments,
)
from shared.events.complaints import (
    ComplaintDeadlineExtended,
    ComplaintEscalationRefused,
    ComplaintOmbudsmanDecided,
    ComplaintOpened,
    ComplaintResponded,
    EscalationRefusalReason,
)
from shared.events.vocabulary import (
    Channel,
    ComplaintOutcome,
    ComplaintProcedure,
    ContactKind,
    DeadlineKind,
)
from tests.support.metrics import Events

EVENTS = Events("u")
LATE_SUMMER_EVENING = datetime(2026, 7, 1, 23, 30, tzinfo=UTC)  # 2 July in London


def measures(increments: list) -> Counter[str]:  # type: ignore[type-arg]
    counted: Counter[str] = Counter()
    for increment in increments:
        counted[increment.measure] += increment.amount
    return counted


def test_an_answered_call_counts_its_wait_transfers_and_service_level() -> None:
    call = EVENTS.received(
        "c", LATE_SUMMER_EVENING, channel=Channel.PHONE, area="waste", transfers=2, wait=12
    )

    increments = stateless_increments(call, service_level_seconds=20)

    assert measures(increments) == {
        "contacts_received": 1,
        "fcr_eligible": 1,
        "calls_answered": 1,
        "calls_transferred": 1,
        "call_transfers": 2,
        "calls_answered_waited": 1,
        "call_wait_seconds": 12,
        "calls_within_service_level": 1,
    }
    assert {i.cell for i in increments} == {Cell(date(2026, 7, 2), "waste", "phone")}


def test_a_call_answered_after_n_seconds_is_outside_the_service_level() -> None:
    call = EVENTS.received("c", LATE_SUMMER_EVENING, channel=Channel.PHONE, area="waste", wait=21)

    assert "calls_within_service_level" not in measures(
        stateless_increments(call, service_level_seconds=20)
    )


def test_only_resolved_untransferred_enquiries_and_requests_are_fcr_candidates() -> None:
    def contact(kind: ContactKind, resolved: bool, transfers: int) -> bool:
        return is_fcr_candidate(
            EVENTS.received(
                "c",
                LATE_SUMMER_EVENING,
                channel=Channel.WEB,
                area="waste",
                kind=kind,
                resolved=resolved,
                transfers=transfers,
            )
        )

    assert contact(ContactKind.ENQUIRY, resolved=True, transfers=0)
    assert contact(ContactKind.SERVICE_REQUEST, resolved=True, transfers=0)
    assert not contact(ContactKind.ENQUIRY, resolved=True, transfers=1)
    assert not contact(ContactKind.ENQUIRY, resolved=False, transfers=0)
    assert not contact(ContactKind.COMPLAINT, resolved=True, transfers=0)


def test_a_compliment_is_counted_but_not_in_fcr() -> None:
    compliment = EVENTS.received(
        "c", LATE_SUMMER_EVENING, channel=Channel.EMAIL, area="waste", kind=ContactKind.COMPLIMENT
    )

    assert measures(stateless_increments(compliment, service_level_seconds=20)) == {
        "contacts_received": 1,
        "compliments_received": 1,
    }


def test_a_statutory_complaint_is_counted_apart_from_the_code() -> None:
    opened = EVENTS.complaint(
        "k",
        LATE_SUMMER_EVENING,
        ComplaintOpened,
        service_area="adult_social_care",
        channel=Channel.PHONE,
        procedure=ComplaintProcedure.ADULT_SOCIAL_CARE,
        statutory=True,
    )

    assert measures(complaint_increments(opened, "")) == {
        "complaints_opened": 1,
        "statutory_complaints_received_s1": 1,
    }


def test_a_response_counts_its_outcome_and_learning_actions_in_the_complaint_channel() -> None:
    responded = EVENTS.complaint(
        "k",
        LATE_SUMMER_EVENING,
        ComplaintResponded,
        service_area="waste",
        stage=1,
        outcome=ComplaintOutcome.PARTLY_UPHELD,
        responder="s1",
        learning_actions=[{"description": "retrain crews", "owner_team": "waste"}],
    )

    increments = complaint_increments(responded, "web")

    assert measures(increments) == {
        "corporate_responded": 1,
        "corporate_responded_partly_upheld": 1,
        "corporate_outcome_partly_upheld_s1": 1,
        "corporate_learning_actions": 1,
    }
    assert {i.cell.channel for i in increments} == {"web"}


def test_the_annual_report_counts_extensions_refusals_and_ombudsman_decisions() -> None:
    """Issue 11 item 8: the report's extensions by stage, refusals by reason and Ombudsman
    decisions are counters, so GET /v1/kpis reproduces each of them."""
    extended = EVENTS.complaint(
        "k",
        LATE_SUMMER_EVENING,
        ComplaintDeadlineExtended,
        service_area="adult_social_care",
        procedure=ComplaintProcedure.ADULT_SOCIAL_CARE,
        stage=1,
        deadline=DeadlineKind.RESPOND,
        new_due_date=date(2026, 10, 1),
    )
    refused = EVENTS.complaint(
        "k",
        LATE_SUMMER_EVENING,
        ComplaintEscalationRefused,
        service_area="waste",
        stage=1,
        reason=EscalationRefusalReason.OUTSIDE_WINDOW,
    )
    decided = EVENTS.complaint(
        "k",
        LATE_SUMMER_EVENING,
        ComplaintOmbudsmanDecided,
        service_area="waste",
        decision="withdrawn",
        ombudsman_reference="LG-9",
    )

    assert measures(complaint_increments(extended, "web")) == {
        "statutory_deadline_extensions_s1": 1
    }
    assert measures(complaint_increments(refused, "web")) == {
        "corporate_escalations_refused": 1,
        "corporate_escalations_refused_outside_window": 1,
    }
    assert measures(complaint_increments(decided, "web")) == {
        "corporate_ombudsman_decided_withdrawn": 1
    }
