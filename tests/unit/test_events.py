"""The event catalogue: every event survives the wire, and the envelope's rules hold."""

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from shared.events.catalogue import ALL_EVENTS, UPCASTS, parse_event, upcast
from shared.events.complaint_versions import (
    ComplaintClosedV1,
    ComplaintClosedV1Payload,
    ComplaintClosedV2,
    ComplaintClosedV2Payload,
    ComplaintDeadlineExtendedV1,
    ComplaintDeadlineExtendedV1Payload,
    ComplaintEscalationRefusedV1,
    ComplaintEscalationRefusedV1Payload,
    ComplaintWithdrawnV1,
    ComplaintWithdrawnV1Payload,
    upcast_closed_v1_v2,
)
from shared.events.complaints import (
    CloseReason,
    ComplaintAcknowledged,
    ComplaintAcknowledgedPayload,
    ComplaintClosed,
    ComplaintClosedPayload,
    ComplaintDeadlineBreachCorrected,
    ComplaintDeadlineBreachCorrectedPayload,
    ComplaintDeadlineBreached,
    ComplaintDeadlineBreachedPayload,
    ComplaintDeadlineExtended,
    ComplaintDeadlineExtendedPayload,
    ComplaintEscalated,
    ComplaintEscalatedPayload,
    ComplaintEscalationRefused,
    ComplaintEscalationRefusedPayload,
    ComplaintEscalationRequested,
    ComplaintEscalationRequestedPayload,
    ComplaintLearningActionCompleted,
    ComplaintLearningActionCompletedPayload,
    ComplaintOmbudsmanDecided,
    ComplaintOmbudsmanDecidedPayload,
    ComplaintOpened,
    ComplaintOpenedPayload,
    ComplaintPanelStepRecorded,
    ComplaintPanelStepRecordedPayload,
    ComplaintReferredToOmbudsman,
    ComplaintReferredToOmbudsmanPayload,
    ComplaintResponded,
    ComplaintRespondedPayload,
    ComplaintWithdrawn,
    ComplaintWithdrawnPayload,
    EscalationRefusalReason,
    LearningAction,
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
from shared.events.envelope import Event
from shared.events.feedback import (
    CustomerOptedOut,
    SatisfactionExpired,
    SatisfactionRequested,
    SatisfactionRequestedPayload,
    SatisfactionResponded,
    SatisfactionRespondedPayload,
    SatisfactionRespondedV1,
    SatisfactionRespondedV1Payload,
    SurveyCase,
)
from shared.events.metrics import (
    KpiTargetMissed,
    KpiTargetMissedPayload,
    SurgeDetected,
    SurgeDetectedPayload,
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

OCCURRED_AT = datetime(2026, 1, 12, 9, 30, tzinfo=UTC)
RECORDED_AT = datetime(2026, 1, 12, 9, 31, 15, 250_000, tzinfo=UTC)
CONTACT_ID = "crm/contact-0042"
COMPLAINT_ID = "complaint-2026-0007"
REQUEST_ID = "satisfaction-0099"
CUSTOMER_REF = "CUST-000123"
SURGE_ID = "waste:complaints:2026-01-12"
KPI_KEY = "first_contact_resolution:planning:2026Q3"


def envelope(**overrides: Any) -> dict[str, Any]:
    """The envelope fields every event needs, with fixed values."""
    fields: dict[str, Any] = {
        "event_id": UUID("0b9f3a52-7c1e-4e0a-9a64-3f2d1c0b5a11"),
        "occurred_at": OCCURRED_AT,
        "recorded_at": RECORDED_AT,
        "source": "crm",
        "correlation_id": UUID("5c2a7d10-1111-4222-8333-944455556666"),
        "causation_id": UUID("7e3b8f21-aaaa-4bbb-8ccc-dddd0000eeee"),
    }
    fields.update(overrides)
    return fields


def survey_case() -> dict[str, Any]:
    return {
        "case_type": CaseType.COMPLAINT,
        "case_id": COMPLAINT_ID,
        "service_area": "housing",
        "channel": Channel.WEB,
    }


FACTORIES: dict[type[Event], Callable[[], Event]] = {
    ContactReceived: lambda: ContactReceived(
        **envelope(),
        contact_id=CONTACT_ID,
        payload=ContactReceivedPayload(
            channel=Channel.PHONE,
            service_area="planning",
            kind=ContactKind.SERVICE_REQUEST,
            customer_ref=CUSTOMER_REF,
            answered_by_team="reception",
            transfers=2,
            resolved_at_first_contact=True,
            wait_seconds=37.5,
        ),
    ),
    ContactTransferred: lambda: ContactTransferred(
        **envelope(),
        contact_id=CONTACT_ID,
        payload=ContactTransferredPayload(
            from_team="reception", to_team="planning", service_area="planning"
        ),
    ),
    ContactResolved: lambda: ContactResolved(
        **envelope(),
        contact_id=CONTACT_ID,
        payload=ContactResolvedPayload(
            channel=Channel.FACE_TO_FACE,
            service_area="council_tax",
            kind=ContactKind.ENQUIRY,
            customer_ref=CUSTOMER_REF,
            resolved_by_team="council_tax",
        ),
    ),
    CallAbandoned: lambda: CallAbandoned(
        **envelope(),
        contact_id=CONTACT_ID,
        payload=CallAbandonedPayload(service_area="waste", wait_seconds=312.0),
    ),
    MysteryShopAssessed: lambda: MysteryShopAssessed(
        **envelope(),
        contact_id=CONTACT_ID,
        payload=MysteryShopAssessedPayload(
            channel=Channel.EMAIL,
            service_area="benefits",
            scores={"greeting": 80, "accuracy": 100},
        ),
    ),
    ComplaintOpened: lambda: ComplaintOpened(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintOpenedPayload(
            service_area="housing",
            channel=Channel.LETTER,
            customer_ref=CUSTOMER_REF,
            contact_id=CONTACT_ID,
            matter_date=date(2025, 12, 1),
        ),
    ),
    ComplaintAcknowledged: lambda: ComplaintAcknowledged(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintAcknowledgedPayload(service_area="housing", stage=1),
    ),
    ComplaintResponded: lambda: ComplaintResponded(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintRespondedPayload(
            service_area="housing",
            stage=1,
            outcome=ComplaintOutcome.PARTLY_UPHELD,
            responder="staff-17",
            learning_actions=(
                LearningAction(
                    description="Call back within two days of a missed repair",
                    owner_team="housing",
                    due_date=date(2026, 3, 31),
                ),
            ),
        ),
    ),
    ComplaintEscalationRequested: lambda: ComplaintEscalationRequested(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintEscalationRequestedPayload(service_area="housing", from_stage=1),
    ),
    ComplaintEscalated: lambda: ComplaintEscalated(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintEscalatedPayload(service_area="housing", to_stage=2),
    ),
    ComplaintDeadlineExtendedV1: lambda: ComplaintDeadlineExtendedV1(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintDeadlineExtendedV1Payload(
            service_area="housing",
            stage=2,
            deadline=DeadlineKind.RESPOND,
            new_due_date=date(2026, 2, 20),
            reason="Waiting for the contractor's report",
        ),
    ),
    ComplaintDeadlineExtended: lambda: ComplaintDeadlineExtended(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintDeadlineExtendedPayload(
            service_area="housing",
            stage=2,
            deadline=DeadlineKind.RESPOND,
            new_due_date=date(2026, 2, 20),
        ),
    ),
    ComplaintDeadlineBreached: lambda: ComplaintDeadlineBreached(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintDeadlineBreachedPayload(
            service_area="housing",
            stage=1,
            deadline=DeadlineKind.ACKNOWLEDGE,
            due_date=date(2026, 1, 19),
        ),
    ),
    ComplaintReferredToOmbudsman: lambda: ComplaintReferredToOmbudsman(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintReferredToOmbudsmanPayload(
            service_area="housing", ombudsman="housing", ombudsman_reference="HOS-123"
        ),
    ),
    ComplaintWithdrawnV1: lambda: ComplaintWithdrawnV1(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintWithdrawnV1Payload(
            service_area="adult_social_care",
            procedure=ComplaintProcedure.ADULT_SOCIAL_CARE,
            stage=1,
            reason="Resolved informally",
        ),
    ),
    ComplaintWithdrawn: lambda: ComplaintWithdrawn(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintWithdrawnPayload(
            service_area="adult_social_care",
            procedure=ComplaintProcedure.ADULT_SOCIAL_CARE,
            stage=1,
            reason_recorded=True,
        ),
    ),
    ComplaintClosedV1: lambda: ComplaintClosedV1(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintClosedV1Payload(service_area="housing", final_stage=1, reason="r"),
    ),
    ComplaintClosedV2: lambda: ComplaintClosedV2(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintClosedV2Payload(
            service_area="housing",
            final_stage=1,
            closed_because=CloseReason.REFUSED,
            reason="Already decided by the tribunal",
        ),
    ),
    ComplaintClosed: lambda: ComplaintClosed(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintClosedPayload(service_area="housing", final_stage=2),
    ),
    ComplaintEscalationRefusedV1: lambda: ComplaintEscalationRefusedV1(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintEscalationRefusedV1Payload(
            service_area="housing",
            stage=1,
            reason=EscalationRefusalReason.LEGAL_PROCEEDINGS,
            detail="The tenant has issued a claim in the county court.",
        ),
    ),
    ComplaintEscalationRefused: lambda: ComplaintEscalationRefused(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintEscalationRefusedPayload(
            service_area="housing",
            stage=1,
            reason=EscalationRefusalReason.LEGAL_PROCEEDINGS,
            detail_recorded=True,
        ),
    ),
    ComplaintDeadlineBreachCorrected: lambda: ComplaintDeadlineBreachCorrected(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintDeadlineBreachCorrectedPayload(
            service_area="waste",
            stage=1,
            deadline=DeadlineKind.ACKNOWLEDGE,
            due_date=date(2026, 1, 19),
            met_on=date(2026, 1, 19),
        ),
    ),
    ComplaintOmbudsmanDecided: lambda: ComplaintOmbudsmanDecided(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintOmbudsmanDecidedPayload(
            service_area="housing", ombudsman_reference="HOS-123", decision="not_upheld"
        ),
    ),
    ComplaintLearningActionCompleted: lambda: ComplaintLearningActionCompleted(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintLearningActionCompletedPayload(
            service_area="waste",
            learning_action_id="1.1",
            owner_team="waste-operations",
            due_date=date(2026, 3, 31),
            completed_on=date(2026, 3, 20),
            on_time=True,
        ),
    ),
    ComplaintPanelStepRecorded: lambda: ComplaintPanelStepRecorded(
        **envelope(),
        complaint_id=COMPLAINT_ID,
        payload=ComplaintPanelStepRecordedPayload(
            service_area="childrens_social_care",
            procedure=ComplaintProcedure.CHILDRENS_SOCIAL_CARE,
            stage=3,
            step=DeadlineKind.PANEL_MEETING,
        ),
    ),
    SatisfactionRequested: lambda: SatisfactionRequested(
        **envelope(),
        request_id=REQUEST_ID,
        payload=SatisfactionRequestedPayload(
            **survey_case(),
            customer_ref=CUSTOMER_REF,
            expires_at=datetime(2026, 2, 12, 9, 30, tzinfo=UTC),
        ),
    ),
    SatisfactionRespondedV1: lambda: SatisfactionRespondedV1(
        **envelope(),
        request_id=REQUEST_ID,
        payload=SatisfactionRespondedV1Payload(
            **survey_case(), overall=4, ease=6, resolved=Resolved.PARTLY, comment="Quick reply."
        ),
    ),
    SatisfactionResponded: lambda: SatisfactionResponded(
        **envelope(),
        request_id=REQUEST_ID,
        payload=SatisfactionRespondedPayload(
            **survey_case(), overall=4, ease=6, resolved=Resolved.PARTLY, comment_ref=REQUEST_ID
        ),
    ),
    SatisfactionExpired: lambda: SatisfactionExpired(
        **envelope(), request_id=REQUEST_ID, payload=SurveyCase(**survey_case())
    ),
    CustomerOptedOut: lambda: CustomerOptedOut(**envelope(), customer_ref=CUSTOMER_REF),
    SurgeDetected: lambda: SurgeDetected(
        **envelope(source="civicpulse-metrics"),
        surge_id=SURGE_ID,
        payload=SurgeDetectedPayload(
            service_area="waste",
            measure="complaints",
            day=date(2026, 1, 12),
            count=140,
            baseline=22.5,
            threshold=60.0,
        ),
    ),
    KpiTargetMissed: lambda: KpiTargetMissed(
        **envelope(source="civicpulse-metrics"),
        kpi_key=KPI_KEY,
        payload=KpiTargetMissedPayload(
            kpi="first_contact_resolution",
            service_area="planning",
            period="2026Q3",
            value=0.61,
            target=0.75,
        ),
    ),
}

SUBJECT_KEYS: dict[type[Event], str] = {
    **{cls: CONTACT_ID for cls in FACTORIES if "contact_id" in cls.model_fields},
    **{cls: COMPLAINT_ID for cls in FACTORIES if "complaint_id" in cls.model_fields},
    **{cls: REQUEST_ID for cls in FACTORIES if "request_id" in cls.model_fields},
    CustomerOptedOut: CUSTOMER_REF,
    SurgeDetected: SURGE_ID,
    KpiTargetMissed: KPI_KEY,
}

every_event = pytest.mark.parametrize("event_class", ALL_EVENTS, ids=lambda cls: cls.__name__)


def contact_received_json(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(FACTORIES[ContactReceived]().to_bytes())
    document.update(changes)
    return document


def test_every_event_in_the_catalogue_has_a_factory_here() -> None:
    assert set(FACTORIES) == set(ALL_EVENTS)
    assert set(SUBJECT_KEYS) == set(ALL_EVENTS)


@every_event
def test_an_event_survives_the_round_trip_through_bytes(event_class: type[Event]) -> None:
    event = FACTORIES[event_class]()

    parsed = parse_event(event.to_bytes())

    # An old version comes back as the current one (its upcast is tested below).
    assert type(parsed) is (event_class if event_class not in UPCASTS else type(upcast(event)))
    assert parsed == upcast(event)


@every_event
def test_an_events_bytes_are_its_pydantic_json(event_class: type[Event]) -> None:
    """`to_bytes` calls the serialiser directly: the same bytes as `model_dump_json`."""
    event = FACTORIES[event_class]()

    assert event.to_bytes() == event.model_dump_json().encode()


@every_event
def test_an_event_parses_from_a_json_string_too(event_class: type[Event]) -> None:
    event = FACTORIES[event_class]()

    assert parse_event(event.to_bytes().decode()) == upcast(event)


def test_a_version_one_close_is_read_as_version_two_with_its_cause() -> None:
    """docs/production.md, schema evolution: a changed meaning is a new version with an
    upcast, so consumers see only the current one."""
    with_reason = FACTORIES[ComplaintClosedV1]()
    assert isinstance(with_reason, ComplaintClosedV1)
    without_reason = with_reason.model_copy(
        update={"payload": with_reason.payload.model_copy(update={"reason": None})}
    )

    as_v2 = upcast_closed_v1_v2(with_reason)
    read_with = parse_event(with_reason.to_bytes())
    read_without = parse_event(without_reason.to_bytes())

    assert (as_v2.schema_version, as_v2.payload.reason) == (2, "r")
    assert as_v2.payload.closed_because is CloseReason.OFFICER_CLOSED
    assert isinstance(read_with, ComplaintClosed)
    assert (read_with.schema_version, read_with.event_id) == (3, with_reason.event_id)
    assert read_with.payload.closed_because is CloseReason.OFFICER_CLOSED
    assert read_with.payload.reason_recorded is True
    assert isinstance(read_without, ComplaintClosed)
    assert read_without.payload.closed_because is CloseReason.RESOLVED
    assert read_without.payload.reason_recorded is False


@pytest.mark.parametrize(
    ("old_class", "field", "text"),
    [
        (ComplaintDeadlineExtendedV1, "reason", "Waiting for the contractor's report"),
        (ComplaintWithdrawnV1, "reason", "Resolved informally"),
        (ComplaintClosedV2, "reason", "Already decided by the tribunal"),
        (
            ComplaintEscalationRefusedV1,
            "detail",
            "The tenant has issued a claim in the county court.",
        ),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_an_old_complaint_event_with_an_officer_s_text_is_read_without_it(
    old_class: type[Event], field: str, text: str
) -> None:
    """Issue 12, item 7: officers' free text no longer travels on civicpulse.complaints
    (kept for ever); an old version read back keeps its facts and only says there was one."""
    old = FACTORIES[old_class]()
    assert text in old.model_dump_json()

    current = parse_event(old.to_bytes())

    assert current.schema_version == old.schema_version + 1
    assert text not in current.model_dump_json()
    flags = current.payload.model_dump(include={"reason_recorded", "detail_recorded"})  # type: ignore[attr-defined]
    assert all(flags.values())
    old_facts = old.payload.model_dump(exclude={field})  # type: ignore[attr-defined]
    assert current.payload.model_dump(exclude=set(flags)) == old_facts  # type: ignore[attr-defined]


def test_a_version_one_answer_is_read_as_version_two_without_its_text() -> None:
    """Issue 12, item 7: free text no longer travels on topics kept for ever; an old
    answer read back (a rebuild) gives consumers only whether it had a comment."""
    with_comment = FACTORIES[SatisfactionRespondedV1]()
    assert isinstance(with_comment, SatisfactionRespondedV1)
    without_comment = with_comment.model_copy(
        update={"payload": with_comment.payload.model_copy(update={"comment": None})}
    )

    read_with = parse_event(with_comment.to_bytes())
    read_without = parse_event(without_comment.to_bytes())

    assert isinstance(read_with, SatisfactionResponded)
    assert (read_with.schema_version, read_with.event_id) == (2, with_comment.event_id)
    assert read_with.payload.comment_ref == with_comment.request_id
    assert (read_with.payload.overall, read_with.payload.ease) == (4, 6)
    assert "Quick reply." not in read_with.model_dump_json()
    assert isinstance(read_without, SatisfactionResponded)
    assert read_without.payload.comment_ref is None


@every_event
def test_an_event_key_is_its_subject_id(event_class: type[Event]) -> None:
    assert FACTORIES[event_class]().key == SUBJECT_KEYS[event_class]


@every_event
def test_an_event_cannot_be_changed_after_it_is_made(event_class: type[Event]) -> None:
    event = FACTORIES[event_class]()

    with pytest.raises(ValidationError, match="frozen"):
        event.source = "someone-else"  # type: ignore[misc]

    assert event.source != "someone-else"


def test_an_event_payload_cannot_be_changed_after_it_is_made() -> None:
    event = FACTORIES[ContactReceived]()
    assert isinstance(event, ContactReceived)

    with pytest.raises(ValidationError, match="frozen"):
        event.payload.transfers = 9  # type: ignore[misc]

    assert event.payload.transfers == 2


def test_a_mystery_shop_assessment_scores_cannot_be_changed_after_it_is_made() -> None:
    event = FACTORIES[MysteryShopAssessed]()
    assert isinstance(event, MysteryShopAssessed)

    with pytest.raises(TypeError):
        event.payload.scores["greeting"] = 0  # type: ignore[index]

    assert event.payload.scores["greeting"] == 80


@pytest.mark.parametrize("event_type", ["ContactExploded", "contact_received", "", None], ids=repr)
def test_an_unknown_event_type_is_refused(event_type: str | None) -> None:
    document = contact_received_json(event_type=event_type)

    with pytest.raises(ValidationError, match="unknown event_type/schema_version"):
        parse_event(json.dumps(document))


@pytest.mark.parametrize("schema_version", [0, 2, "one", None], ids=repr)
def test_an_unknown_schema_version_is_refused(schema_version: object) -> None:
    document = contact_received_json(schema_version=schema_version)

    with pytest.raises(ValidationError, match="unknown event_type/schema_version"):
        parse_event(json.dumps(document))


def test_a_payload_that_belongs_to_another_event_type_is_refused() -> None:
    transferred = json.loads(FACTORIES[ContactTransferred]().to_bytes())
    document = contact_received_json(payload=transferred["payload"])

    with pytest.raises(ValidationError):
        parse_event(json.dumps(document))


def test_an_event_with_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        parse_event(json.dumps(contact_received_json(customer_name="Jane Smith")))


def test_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse_event(b"not json at all")


def test_a_timestamp_with_another_offset_is_normalised_to_utc() -> None:
    one_hour_ahead = timezone(timedelta(hours=1))
    local = datetime(2026, 6, 1, 10, 30, tzinfo=one_hour_ahead)

    event = ContactReceived(
        **envelope(occurred_at=local, recorded_at=local),
        contact_id=CONTACT_ID,
        payload=ContactReceivedPayload(
            channel=Channel.WEB, service_area="planning", kind=ContactKind.ENQUIRY
        ),
    )

    assert event.occurred_at == local
    assert event.occurred_at.tzinfo is UTC
    assert event.occurred_at.hour == 9
    assert event.recorded_at.tzinfo is UTC


def test_a_timestamp_with_another_offset_is_normalised_to_utc_when_parsed() -> None:
    document = contact_received_json(occurred_at="2026-06-01T10:30:00+01:00")

    event = parse_event(json.dumps(document))

    assert event.occurred_at == datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)


def test_a_nested_timestamp_is_normalised_to_utc() -> None:
    expires = datetime(2026, 2, 12, 9, 30, tzinfo=timezone(timedelta(hours=-5)))

    payload = SatisfactionRequestedPayload(
        **survey_case(), customer_ref=CUSTOMER_REF, expires_at=expires
    )

    assert payload.expires_at == expires
    assert payload.expires_at.tzinfo is UTC


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        ContactReceived(
            **envelope(occurred_at=datetime(2026, 1, 12, 9, 30)),
            contact_id=CONTACT_ID,
            payload=ContactReceivedPayload(
                channel=Channel.WEB, service_area="planning", kind=ContactKind.ENQUIRY
            ),
        )

    assert [error["loc"] for error in refused.value.errors()] == [("occurred_at",)]


def test_a_naive_timestamp_is_refused_when_parsed() -> None:
    document = contact_received_json(occurred_at="2026-01-12T09:30:00")

    with pytest.raises(ValidationError, match="timezone"):
        parse_event(json.dumps(document))


@pytest.mark.parametrize("field", ["occurred_at", "recorded_at"])
@pytest.mark.parametrize(
    "instant",
    [
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
        "9000-01-01T00:00:00+00:00",
        "1899-12-31T23:59:59+00:00",
    ],
)
def test_an_instant_past_the_utc_range_is_a_validation_error_when_parsed(
    field: str, instant: str
) -> None:
    """Issue 9: such an instant raised OverflowError, which consumers did not catch."""
    document = contact_received_json(**{field: instant})

    with pytest.raises(ValidationError) as refused:
        parse_event(json.dumps(document))

    assert [error["loc"][-1] for error in refused.value.errors()] == [field]


@pytest.mark.parametrize("instant", ["1900-01-01T00:00:00+00:00", "8999-12-31T23:59:59+00:00"])
def test_an_instant_at_the_ends_of_the_supported_years_is_accepted(instant: str) -> None:
    event = parse_event(json.dumps(contact_received_json(occurred_at=instant)))

    assert event.occurred_at == datetime.fromisoformat(instant)


def test_a_nested_instant_past_the_utc_range_is_a_validation_error() -> None:
    far = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1)))

    with pytest.raises(ValidationError) as refused:
        SatisfactionRequestedPayload(**survey_case(), customer_ref=CUSTOMER_REF, expires_at=far)

    assert [error["loc"] for error in refused.value.errors()] == [("expires_at",)]


def test_recorded_at_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    fields = envelope()
    del fields["recorded_at"]

    event = CallAbandoned(
        **fields,
        contact_id=CONTACT_ID,
        payload=CallAbandonedPayload(service_area="waste", wait_seconds=3.0),
    )

    assert event.recorded_at.tzinfo is UTC
    assert before <= event.recorded_at <= datetime.now(UTC)


def test_each_event_gets_its_own_id_when_none_is_given() -> None:
    fields = envelope()
    del fields["event_id"]
    payload = CallAbandonedPayload(service_area="waste", wait_seconds=3.0)

    first = CallAbandoned(**fields, contact_id=CONTACT_ID, payload=payload)
    second = CallAbandoned(**fields, contact_id=CONTACT_ID, payload=payload)

    assert first.event_id != second.event_id


@pytest.mark.parametrize(
    "procedure",
    [ComplaintProcedure.ADULT_SOCIAL_CARE, ComplaintProcedure.CHILDRENS_SOCIAL_CARE],
)
def test_a_social_care_complaint_is_statutory(procedure: ComplaintProcedure) -> None:
    payload = ComplaintOpenedPayload(
        service_area="adult_social_care", channel=Channel.PHONE, procedure=procedure, statutory=True
    )

    assert payload.statutory is True


def test_a_corporate_complaint_is_not_statutory_by_default() -> None:
    payload = ComplaintOpenedPayload(service_area="housing", channel=Channel.PHONE)

    assert payload.procedure is ComplaintProcedure.CORPORATE
    assert payload.statutory is False


def test_a_statutory_complaint_under_the_corporate_procedure_is_refused() -> None:
    with pytest.raises(ValidationError, match="statutory must be true exactly"):
        ComplaintOpenedPayload(
            service_area="housing",
            channel=Channel.PHONE,
            procedure=ComplaintProcedure.CORPORATE,
            statutory=True,
        )


@pytest.mark.parametrize(
    "procedure",
    [ComplaintProcedure.ADULT_SOCIAL_CARE, ComplaintProcedure.CHILDRENS_SOCIAL_CARE],
)
def test_a_social_care_complaint_that_is_not_statutory_is_refused(
    procedure: ComplaintProcedure,
) -> None:
    with pytest.raises(ValidationError, match="statutory must be true exactly"):
        ComplaintOpenedPayload(
            service_area="childrens_social_care",
            channel=Channel.PHONE,
            procedure=procedure,
            statutory=False,
        )
