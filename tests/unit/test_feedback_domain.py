"""The satisfaction rules (DOMAIN.md, "Satisfaction"): who is surveyed, when, and what an
answer must hold."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.feedback.domain import (
    MAX_COMMENT_LENGTH,
    CustomerHistory,
    InvalidAnswersError,
    Policy,
    Resolution,
    Schedule,
    Suppress,
    SuppressionReason,
    decide,
    is_final_response,
    read_answers,
    redact,
    request_id_for,
)
from shared.events.feedback import SatisfactionRespondedV1Payload
from shared.events.vocabulary import (
    CaseType,
    Channel,
    ComplaintProcedure,
    ContactKind,
    Resolved,
)

NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)
POLICY = Policy(
    delay=timedelta(hours=24), expiry=timedelta(days=14), quiet_period=timedelta(days=30)
)
ENQUIRY = Resolution(
    case_type=CaseType.CONTACT,
    case_id="C-1",
    service_area="waste",
    channel=Channel.PHONE,
    customer_ref="CUST-1",
    resolved_at=NOW,
    contact_kind=ContactKind.ENQUIRY,
)
COMPLAINT = Resolution(
    case_type=CaseType.COMPLAINT,
    case_id="K-1",
    service_area="housing",
    channel=Channel.WEB,
    customer_ref="CUST-1",
    resolved_at=NOW,
    procedure=ComplaintProcedure.CORPORATE,
)
REACHABLE = CustomerHistory(opted_out=False, has_contact_route=True, case_already_requested=False)


def reason(resolution: Resolution, history: CustomerHistory = REACHABLE) -> SuppressionReason:
    decision = decide(resolution, history, POLICY, NOW)
    assert isinstance(decision, Suppress), decision
    return decision.reason


@pytest.mark.parametrize("kind", [ContactKind.ENQUIRY, ContactKind.SERVICE_REQUEST])
def test_a_resolved_enquiry_or_service_request_is_surveyed_after_the_delay(
    kind: ContactKind,
) -> None:
    decision = decide(replace(ENQUIRY, contact_kind=kind), REACHABLE, POLICY, NOW)

    assert decision == Schedule(request_id_for(CaseType.CONTACT, "C-1"), NOW + POLICY.delay)


def test_a_corporate_complaint_is_surveyed() -> None:
    assert isinstance(decide(COMPLAINT, REACHABLE, POLICY, NOW), Schedule)


@pytest.mark.parametrize("kind", [ContactKind.COMPLIMENT, ContactKind.FEEDBACK])
def test_compliments_and_feedback_contacts_are_not_surveyed(kind: ContactKind) -> None:
    assert reason(replace(ENQUIRY, contact_kind=kind)) is SuppressionReason.NOT_SURVEYED_KIND


def test_a_complaint_contact_is_left_to_the_complaint_procedure() -> None:
    resolution = replace(ENQUIRY, contact_kind=ContactKind.COMPLAINT)

    assert reason(resolution) is SuppressionReason.COMPLAINT_PROCEDURE


@pytest.mark.parametrize(
    "procedure", [ComplaintProcedure.ADULT_SOCIAL_CARE, ComplaintProcedure.CHILDRENS_SOCIAL_CARE]
)
def test_statutory_social_care_complaints_have_their_own_survey(
    procedure: ComplaintProcedure,
) -> None:
    assert reason(replace(COMPLAINT, procedure=procedure)) is SuppressionReason.STATUTORY_PROCEDURE


def test_a_withdrawn_complaint_is_not_surveyed() -> None:
    assert reason(replace(COMPLAINT, withdrawn=True)) is SuppressionReason.WITHDRAWN


def test_a_case_already_requested_never_gets_a_second_request() -> None:
    history = replace(REACHABLE, case_already_requested=True)

    assert reason(ENQUIRY, history) is SuppressionReason.ALREADY_REQUESTED


def test_a_customer_who_opted_out_is_not_surveyed() -> None:
    assert reason(ENQUIRY, replace(REACHABLE, opted_out=True)) is SuppressionReason.OPTED_OUT


def test_a_customer_without_a_contact_route_is_not_surveyed() -> None:
    history = replace(REACHABLE, has_contact_route=False)

    assert reason(ENQUIRY, history) is SuppressionReason.NO_CONTACT_ROUTE


def test_an_anonymous_contact_has_no_contact_route() -> None:
    assert reason(replace(ENQUIRY, customer_ref=None)) is SuppressionReason.NO_CONTACT_ROUTE


def test_a_customer_surveyed_within_the_quiet_period_is_not_surveyed_again() -> None:
    history = replace(REACHABLE, surveyed_resolutions=(NOW - timedelta(days=29),))

    assert reason(ENQUIRY, history) is SuppressionReason.QUIET_PERIOD


def test_the_quiet_period_also_covers_a_later_resolution_handled_first() -> None:
    history = replace(REACHABLE, surveyed_resolutions=(NOW + timedelta(days=2),))

    assert reason(ENQUIRY, history) is SuppressionReason.QUIET_PERIOD


def test_a_customer_surveyed_before_the_quiet_period_is_surveyed_again() -> None:
    history = replace(REACHABLE, surveyed_resolutions=(NOW - timedelta(days=31),))

    assert isinstance(decide(ENQUIRY, history, POLICY, NOW), Schedule)


def test_a_resolution_too_old_to_answer_is_stale_so_a_replay_surveys_nobody() -> None:
    old = replace(ENQUIRY, resolved_at=NOW - timedelta(days=16))

    assert reason(old) is SuppressionReason.STALE


def test_the_first_rule_that_applies_is_the_reason() -> None:
    history = CustomerHistory(opted_out=True, has_contact_route=False, case_already_requested=True)

    assert reason(ENQUIRY, history) is SuppressionReason.ALREADY_REQUESTED


def test_one_case_always_has_the_same_request_id() -> None:
    assert request_id_for(CaseType.CONTACT, "C-1") == request_id_for(CaseType.CONTACT, "C-1")
    assert request_id_for(CaseType.CONTACT, "C-1") != request_id_for(CaseType.COMPLAINT, "C-1")


@pytest.mark.parametrize(
    ("procedure", "stage", "final"),
    [
        (ComplaintProcedure.CORPORATE, 1, False),
        (ComplaintProcedure.CORPORATE, 2, True),
        (ComplaintProcedure.ADULT_SOCIAL_CARE, 1, True),
        (ComplaintProcedure.CHILDRENS_SOCIAL_CARE, 2, False),
        (ComplaintProcedure.CHILDRENS_SOCIAL_CARE, 3, True),
    ],
)
def test_only_the_response_of_the_last_stage_is_final(
    procedure: ComplaintProcedure, stage: int, final: bool
) -> None:
    assert is_final_response(procedure, stage) is final


def test_answers_are_read_from_the_form() -> None:
    answers = read_answers({"overall": "5", "ease": "7", "resolved": "partly", "comment": " ok "})

    assert (answers.overall, answers.ease, answers.resolved, answers.comment) == (
        5,
        7,
        Resolved.PARTLY,
        "ok",
    )


def test_an_empty_comment_is_no_comment() -> None:
    assert read_answers({"overall": "1", "ease": "1", "resolved": "no"}).comment is None


def test_every_missing_or_out_of_range_answer_is_reported_by_field() -> None:
    with pytest.raises(InvalidAnswersError) as raised:
        read_answers({"overall": "6", "ease": "", "resolved": "maybe", "comment": "x" * 1001})

    assert [e.field for e in raised.value.errors] == ["overall", "ease", "resolved", "comment"]


def test_emails_and_phone_numbers_are_removed_from_comments() -> None:
    comment = "Call me on 07700 900123 or write to jo.bloggs@example.org, thanks"

    assert redact(comment) == "Call me on [removed] or write to [removed], thanks"


def test_a_redacted_comment_at_the_limit_still_fits_the_event() -> None:
    """Issue 9, item 4: "[removed]" is longer than `a@b.co`, so a comment of short
    addresses grew past SatisfactionResponded's 1,000 characters (HTTP 500)."""
    comment = " ".join(["a@b.co"] * 143)[:MAX_COMMENT_LENGTH]

    answers = read_answers({"overall": "4", "ease": "5", "resolved": "yes", "comment": comment})

    assert answers.comment is not None
    assert len(answers.comment) <= MAX_COMMENT_LENGTH
    assert "a@b.co" not in answers.comment
    SatisfactionRespondedV1Payload(
        case_type=CaseType.CONTACT,
        case_id="C-1",
        service_area="waste",
        channel=Channel.PHONE,
        overall=4,
        ease=5,
        resolved=Resolved.YES,
        comment=answers.comment,
    )


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(["a@b.co", "jo.bloggs@example.org", "07700 900123", "x", " ", "Bin 2"]),
        max_size=200,
    )
)
def test_redaction_never_lengthens_a_comment(parts: list[str]) -> None:
    comment = " ".join(parts)

    redacted = redact(comment)

    assert len(redacted) <= len(comment)
    assert "@" not in redacted


def test_ordinary_numbers_in_comments_are_kept() -> None:
    assert redact("Bin 2 was missed on 12 March") == "Bin 2 was missed on 12 March"
