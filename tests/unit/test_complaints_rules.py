"""Issue 11's rules, to the letter of the Complaint Handling Code and the regulations.

Each test names its source in the docstring: the Code (the Local Government and
Social Care Ombudsman's and the Housing Ombudsman's Complaint Handling Code, 2024),
the Children Act 1989 Representations Procedure (England) Regulations 2006, or the
Local Authority Social Services and NHS Complaints (England) Regulations 2009, as
docs/complaints.md quotes them.
"""

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.complaints.domain import (
    Complaint,
    Context,
    Decision,
    Refusal,
    RefusalReason,
    Status,
    breach,
    decide,
    lapse,
    recalculate,
)
from services.complaints.procedures import Policy
from services.complaints.store import wanted_timers
from services.complaints.working_days import WorkingDayCalendar, end_of_local_day
from services.metrics.domain.measures import complaint_increments
from shared.events.complaints import (
    CloseReason,
    ComplaintDeadlineBreachCorrected,
    ComplaintDeadlineBreachCorrectedPayload,
    ComplaintEscalationRequested,
    ComplaintEscalationRequestedPayload,
)
from shared.events.vocabulary import ComplaintProcedure, DeadlineKind
from tests.support.complaints import action, london_at

CALENDAR = WorkingDayCalendar()
RECORDED_AT = datetime(2026, 1, 1, tzinfo=UTC)
ID = "CMP-rules"


def context(calendar: WorkingDayCalendar = CALENDAR, policy: Policy | None = None) -> Context:
    return Context(calendar, policy or Policy(), recorded_at=RECORDED_AT)


def apply(
    complaint: Complaint | None,
    kind: str,
    day: date,
    *,
    ctx: Context | None = None,
    **fields: Any,
) -> Decision:
    outcome = decide(
        complaint,
        action(
            kind,
            ID,
            f"{kind}-{day}-{hashlib.md5(str(fields).encode()).hexdigest()}",
            london_at(day),
            **fields,
        ),
        ctx or context(),
    )
    assert isinstance(outcome, Decision), outcome
    return outcome


def refused(complaint: Complaint, kind: str, day: date, **fields: Any) -> RefusalReason:
    outcome = decide(complaint, action(kind, ID, f"{kind}-x", london_at(day), **fields), context())
    assert isinstance(outcome, Refusal), outcome
    return outcome.reason


def payload_of(decision: Decision, index: int = 0) -> Any:
    """One event's payload (the events are typed by their common base)."""
    event: Any = decision.events[index]
    return event.payload


def types(decision: Decision) -> list[str]:
    return [event.event_type for event in decision.events]


def responded(
    area: str = "waste", policy: Policy | None = None, calendar: WorkingDayCalendar = CALENDAR
) -> Complaint:
    """Opened Monday 5 January 2026, acknowledged the 6th, answered Wednesday the 14th."""
    ctx = context(calendar, policy)
    complaint = apply(None, "open", date(2026, 1, 5), ctx=ctx, service_area=area).complaint
    complaint = apply(complaint, "acknowledge", date(2026, 1, 6), ctx=ctx).complaint
    return apply(complaint, "respond", date(2026, 1, 14), ctx=ctx).complaint


def due(complaint: Complaint, stage: int, kind: DeadlineKind) -> date:
    deadline = complaint.deadline(stage, kind)
    assert deadline is not None
    return deadline.due_date


# -- 1. the escalation window ---------------------------------------------------------


def test_a_stage_one_window_that_ends_with_no_request_closes_the_complaint_as_lapsed() -> None:
    """DOMAIN.md / Code 5.x: when the window to ask for stage 2 ends with no request, the
    complaint closes (reason: window lapsed), once, at the end of the window's last day."""
    complaint = responded()  # 20 working days: to Wednesday 11 February
    last_day_ends = end_of_local_day(date(2026, 2, 11))

    early = lapse(complaint, now=last_day_ends - timedelta(seconds=1), recorded_at=RECORDED_AT)
    closed = lapse(complaint, now=last_day_ends, recorded_at=RECORDED_AT)
    assert closed is not None
    again = lapse(closed.complaint, now=last_day_ends, recorded_at=RECORDED_AT)

    assert complaint.escalation_window_ends == date(2026, 2, 11)
    assert early is None
    assert types(closed) == ["ComplaintClosed"]
    payload: Any = payload_of(closed, 0)
    assert payload.closed_because is CloseReason.ESCALATION_WINDOW_LAPSED
    assert closed.events[0].occurred_at == last_day_ends
    assert closed.complaint.status is Status.CLOSED
    assert again is None


def test_a_close_by_hand_inside_the_window_needs_a_reason_and_keeps_the_right_to_escalate() -> None:
    """DOMAIN.md: an officer may close earlier only with a reason, and an escalation asked
    for inside the window still reopens it at stage 2."""
    complaint = responded()

    reason = refused(complaint, "close", date(2026, 1, 20))
    closed = apply(complaint, "close", date(2026, 1, 20), reason="customer content").complaint
    reopened = apply(closed, "request_escalation", date(2026, 2, 11))
    too_late = refused(closed, "request_escalation", date(2026, 2, 12))

    assert reason is RefusalReason.REASON_REQUIRED
    payload: Any = payload_of(apply(complaint, "close", date(2026, 1, 20), reason="r"))
    assert payload.closed_because is CloseReason.OFFICER_CLOSED
    assert types(reopened) == ["ComplaintEscalationRequested"]
    assert reopened.complaint.status is Status.ESCALATION_REQUESTED
    assert due(reopened.complaint, 2, DeadlineKind.ACKNOWLEDGE) == date(2026, 2, 18)
    assert too_late is RefusalReason.ESCALATION_WINDOW_CLOSED


def test_a_request_dated_inside_the_window_is_accepted_after_the_lapse_timer_closed_it() -> None:
    """DOMAIN.md: on time is judged by the action's local date, whatever the order of
    arrival; a request made on the window's last day arriving late still escalates."""
    lapsed = lapse(responded(), now=end_of_local_day(date(2026, 2, 11)), recorded_at=RECORDED_AT)
    assert lapsed is not None

    escalated = apply(lapsed.complaint, "request_escalation", date(2026, 2, 11))

    assert escalated.complaint.status is Status.ESCALATION_REQUESTED


def test_a_close_dated_after_the_window_ended_is_the_lapse_itself() -> None:
    """DOMAIN.md: when the window ends with no request the complaint closes (window lapsed);
    a case-management system closing it then needs no reason, and a later request is
    refused (one dated inside the window still counts, as after the lapse timer)."""
    closed = apply(responded(), "close", date(2026, 2, 12))

    assert payload_of(closed).closed_because is CloseReason.ESCALATION_WINDOW_LAPSED
    assert refused(closed.complaint, "request_escalation", date(2026, 2, 12)) is (
        RefusalReason.ESCALATION_WINDOW_CLOSED
    )
    assert apply(closed.complaint, "request_escalation", date(2026, 2, 11)).events


def test_a_corporate_window_of_a_calendar_month_ends_on_the_same_date_next_month() -> None:
    """DOMAIN.md: councils set the window in working days or as a calendar month."""
    complaint = responded(policy=Policy(escalation_window_calendar_month=True))

    assert complaint.escalation_window_ends == date(2026, 2, 16)  # 14 Feb is a Saturday


def test_a_childrens_window_is_twenty_working_days_whatever_the_council_s_policy() -> None:
    """2006 regulations, regs. 15 and 18: the complainant has 20 working days after a
    stage's response to ask for the next stage."""
    complaint = responded("childrens_social_care", policy=Policy(10))
    corporate = responded("waste", policy=Policy(10))

    assert complaint.escalation_window_ends == date(2026, 2, 11)
    assert corporate.escalation_window_ends == date(2026, 1, 28)


def test_the_window_is_recalculated_when_a_closure_day_is_added() -> None:
    """DOMAIN.md: when the calendar changes, open deadlines are recalculated (issue 11:
    the escalation window with them)."""
    moved = recalculate(responded(), WorkingDayCalendar([date(2026, 2, 2)]))

    assert moved.escalation_window_ends == date(2026, 2, 12)


# -- 2. the Ombudsman ------------------------------------------------------------------


def test_a_referral_after_a_refused_escalation_is_accepted_on_the_closed_case() -> None:
    """Code: the customer may go to the Ombudsman after the council refuses to escalate;
    DOMAIN.md: record a referral from any of those states, closed cases included."""
    requested = apply(responded(), "request_escalation", date(2026, 1, 20)).complaint
    refusal = apply(requested, "refuse_escalation", date(2026, 1, 21), reason="legal_proceedings")

    referral = apply(
        refusal.complaint, "refer_to_ombudsman", date(2026, 3, 2), ombudsman_reference="LG-1"
    )

    assert types(refusal) == ["ComplaintEscalationRefused", "ComplaintClosed"]
    payload: Any = payload_of(referral, 0)
    assert payload.grounds == "refusal"
    assert referral.complaint.ombudsman is not None
    assert referral.complaint.ombudsman.reference == "LG-1"


def test_a_referral_after_a_missed_deadline_is_accepted_while_the_case_is_open() -> None:
    """Code: the customer may go to the Ombudsman when the council has missed its
    deadlines, without waiting for the response."""
    opened = apply(None, "open", date(2026, 1, 5)).complaint
    missed = breach(
        opened,
        1,
        DeadlineKind.ACKNOWLEDGE,
        now=end_of_local_day(date(2026, 1, 12)),
        recorded_at=RECORDED_AT,
    )
    assert missed is not None

    referral = apply(missed.complaint, "refer_to_ombudsman", date(2026, 1, 20))

    payload: Any = payload_of(referral, 0)
    assert payload.grounds == "missed_deadline"
    assert referral.complaint.status is Status.REFERRED_TO_OMBUDSMAN
    assert not referral.complaint.pending_deadlines()


def test_a_referral_of_a_case_closed_after_its_final_response_is_accepted() -> None:
    """Code: the customer may go to the Ombudsman after the council's final response."""
    requested = apply(responded(), "request_escalation", date(2026, 1, 20)).complaint
    stage_2 = apply(requested, "acknowledge", date(2026, 1, 21)).complaint
    answered = apply(stage_2, "respond", date(2026, 2, 2), responder="director").complaint
    closed = apply(answered, "close", date(2026, 2, 3)).complaint

    referral = apply(closed, "refer_to_ombudsman", date(2026, 4, 1))

    payload: Any = payload_of(referral, 0)
    assert payload.grounds == "final_response"


def test_a_referral_before_any_final_response_refusal_or_missed_deadline_is_refused() -> None:
    """Code: the Ombudsman expects the council's process to have been completed first."""
    assert refused(responded(), "refer_to_ombudsman", date(2026, 1, 20)) is (
        RefusalReason.NOT_YET_REFERABLE
    )


def test_the_ombudsman_s_later_decision_is_recorded_once_and_the_case_stays_visible() -> None:
    """DOMAIN.md: record a referral with the Ombudsman's reference and later its decision."""
    lapsed = lapse(responded(), now=end_of_local_day(date(2026, 2, 11)), recorded_at=RECORDED_AT)
    assert lapsed is not None
    referred = apply(
        lapsed.complaint, "refer_to_ombudsman", date(2026, 3, 2), ombudsman_reference="LG-2"
    )

    decided = apply(
        referred.complaint, "record_ombudsman_decision", date(2026, 6, 1), decision="upheld"
    )

    assert types(decided) == ["ComplaintOmbudsmanDecided"]
    assert decided.complaint.ombudsman is not None
    assert (decided.complaint.ombudsman.decision, decided.complaint.ombudsman.reference) == (
        "upheld",
        "LG-2",
    )
    assert refused(
        decided.complaint, "record_ombudsman_decision", date(2026, 6, 2), decision="withdrawn"
    ) is (RefusalReason.ALREADY_DONE)


# -- 3. timeliness by dates -------------------------------------------------------------


def test_a_late_acknowledgement_before_its_timer_emits_the_missing_breach_first() -> None:
    """DOMAIN.md: on time means the action's local date is on or before the due date; a
    late action processed before its timer fired still breaches, exactly once."""
    opened = apply(None, "open", date(2026, 1, 5)).complaint  # acknowledge by the 12th

    late = apply(opened, "acknowledge", date(2026, 1, 13))
    timer = breach(
        late.complaint,
        1,
        DeadlineKind.ACKNOWLEDGE,
        now=end_of_local_day(date(2026, 1, 13)),
        recorded_at=RECORDED_AT,
    )

    assert types(late) == ["ComplaintDeadlineBreached", "ComplaintAcknowledged"]
    assert late.events[0].occurred_at == end_of_local_day(date(2026, 1, 12))
    assert timer is None


def test_the_breach_a_late_action_finds_has_the_id_its_timer_would_have_given() -> None:
    """DOMAIN.md: ComplaintDeadlineBreached exactly once per deadline, whoever finds it."""
    opened = apply(None, "open", date(2026, 1, 5)).complaint
    by_timer = breach(
        opened,
        1,
        DeadlineKind.ACKNOWLEDGE,
        now=end_of_local_day(date(2026, 1, 12)),
        recorded_at=RECORDED_AT,
    )
    assert by_timer is not None

    by_action = apply(opened, "acknowledge", date(2026, 1, 13))

    assert by_action.events[0].event_id == by_timer.events[0].event_id


def test_an_on_time_acknowledgement_after_the_breach_fired_corrects_it_on_the_breach_s_day() -> (
    None
):
    """DOMAIN.md: an on-time action that arrives after a breach fired corrects it; the view
    and every KPI must agree."""
    opened = apply(None, "open", date(2026, 1, 5)).complaint
    fired = breach(
        opened,
        1,
        DeadlineKind.ACKNOWLEDGE,
        now=end_of_local_day(date(2026, 1, 13)),
        recorded_at=RECORDED_AT,
    )
    assert fired is not None

    on_time = apply(fired.complaint, "acknowledge", date(2026, 1, 12))

    assert types(on_time) == ["ComplaintDeadlineBreachCorrected", "ComplaintAcknowledged"]
    assert on_time.events[0].occurred_at == fired.events[0].occurred_at
    [ack, _] = on_time.complaint.deadlines
    assert (ack.met_in_time, ack.breach_corrected) == (True, True)


def test_a_withdrawal_dated_after_an_unmet_deadline_breaches_it_whatever_arrived_first() -> None:
    """Issue 11 item 3: timeliness by local dates, whatever the order of arrival. A deadline
    whose day ended without its action is breached, exactly once, even when the withdrawal
    dated after it is processed before its timer fires (a backfill, an outage)."""
    opened = apply(None, "open", date(2026, 1, 5)).complaint  # acknowledge by the 12th

    withdrawn = apply(opened, "withdraw", date(2026, 1, 14), reason="resolved informally")
    timer_first = breach(
        opened,
        1,
        DeadlineKind.ACKNOWLEDGE,
        now=end_of_local_day(date(2026, 1, 13)),
        recorded_at=RECORDED_AT,
    )
    assert timer_first is not None
    after_timer = apply(timer_first.complaint, "withdraw", date(2026, 1, 14), reason="resolved")

    assert types(withdrawn) == ["ComplaintDeadlineBreached", "ComplaintWithdrawn"]
    assert withdrawn.events[0].event_id == timer_first.events[0].event_id
    assert types(after_timer) == ["ComplaintWithdrawn"]
    timer_later = breach(
        withdrawn.complaint,
        1,
        DeadlineKind.ACKNOWLEDGE,
        now=end_of_local_day(date(2026, 1, 14)),
        recorded_at=RECORDED_AT,
    )
    assert timer_later is None


def test_a_withdrawal_on_the_due_date_stops_the_deadline_without_a_breach() -> None:
    """Complaint Handling Code 4.1 (acknowledged within 5 working days): a deadline's day
    has not ended on the due date itself, so a case withdrawn then was never late."""
    opened = apply(None, "open", date(2026, 1, 5)).complaint

    withdrawn = apply(opened, "withdraw", date(2026, 1, 12), reason="resolved informally")

    assert types(withdrawn) == ["ComplaintWithdrawn"]
    [ack] = withdrawn.complaint.deadlines
    assert (ack.cancelled, ack.breached) == (True, False)


def test_metrics_count_a_corrected_breach_as_an_on_time_outcome_and_no_breach() -> None:
    """DOMAIN.md: the complaint's view and every KPI must agree: the correction adds the
    on-time outcome and takes the breach away, in the breach's own day."""
    correction = ComplaintDeadlineBreachCorrected(
        occurred_at=end_of_local_day(date(2026, 1, 12)),
        source="civicpulse-complaints",
        complaint_id=ID,
        payload=ComplaintDeadlineBreachCorrectedPayload(
            service_area="waste",
            stage=1,
            deadline=DeadlineKind.ACKNOWLEDGE,
            due_date=date(2026, 1, 12),
            met_on=date(2026, 1, 12),
        ),
    )

    counted = {(i.cell.day, i.measure): i.amount for i in complaint_increments(correction, "web")}

    assert counted == {
        (date(2026, 1, 13), "corporate_ack_on_time_s1"): 1,
        (date(2026, 1, 13), "corporate_deadline_breaches"): -1,
    }


def test_stage_two_is_counted_when_the_customer_asks_for_it() -> None:
    """DOMAIN.md: stage 2 is counted when the customer asks for it, not when acknowledged."""
    requested = ComplaintEscalationRequested(
        occurred_at=london_at(date(2026, 1, 20)),
        source="civicpulse-complaints",
        complaint_id=ID,
        payload=ComplaintEscalationRequestedPayload(service_area="waste", from_stage=1),
    )

    measures = [i.measure for i in complaint_increments(requested, "web")]

    assert "corporate_complaints_received_s2" in measures


# -- 4. the statutory procedures ----------------------------------------------------------


def _at_stage_three() -> Complaint:
    complaint = apply(
        None, "open", date(2026, 1, 5), service_area="childrens_social_care"
    ).complaint
    for responder in ("a", "b"):
        complaint = apply(complaint, "acknowledge", date(2026, 1, 5)).complaint
        complaint = apply(complaint, "respond", date(2026, 1, 5), responder=responder).complaint
        complaint = apply(complaint, "request_escalation", date(2026, 1, 5)).complaint
    return apply(complaint, "acknowledge", date(2026, 1, 6)).complaint


def test_a_childrens_review_panel_must_meet_within_thirty_working_days_of_the_request() -> None:
    """2006 regulations, reg. 19(4): the review panel meets within 30 working days of the
    complainant's request; there is no response deadline until the panel has reported."""
    complaint = _at_stage_three()

    assert due(complaint, 3, DeadlineKind.PANEL_MEETING) == date(2026, 2, 16)
    assert complaint.deadline(3, DeadlineKind.RESPOND) is None


def test_the_panel_reports_within_five_working_days_and_the_council_responds_within_fifteen() -> (
    None
):
    """2006 regulations, reg. 20: the panel's report within 5 working days of the meeting;
    the council's response within 15 working days of the report."""
    met = apply(_at_stage_three(), "record_panel_meeting", date(2026, 2, 10))
    reported = apply(met.complaint, "record_panel_report", date(2026, 2, 17))

    assert types(met) == ["ComplaintPanelStepRecorded"]
    assert due(met.complaint, 3, DeadlineKind.PANEL_REPORT) == date(2026, 2, 17)
    assert due(reported.complaint, 3, DeadlineKind.RESPOND) == date(2026, 3, 10)


def test_adult_six_months_commencing_on_receipt_end_the_day_before_the_anniversary() -> None:
    """2009 regulations, reg. 14: the response period of six months "commencing on the day"
    the complaint was received ends the day before the monthly anniversary."""
    january = apply(None, "open", date(2026, 1, 30), service_area="adult_social_care")
    august = apply(None, "open", date(2027, 8, 31), service_area="adult_social_care")

    assert due(january.complaint, 1, DeadlineKind.RESPOND) == date(2026, 7, 29)
    # 31 August + 6 months: no 31 February, so the day before 1 March 2028.
    assert due(august.complaint, 1, DeadlineKind.RESPOND) == date(2028, 2, 29)


def test_an_adult_response_period_is_extended_by_agreement_more_than_once() -> None:
    """2009 regulations, reg. 14(2): the period may be extended as agreed with the
    complainant, with the reason recorded."""
    opened = apply(None, "open", date(2026, 1, 30), service_area="adult_social_care").complaint

    once = apply(opened, "extend", date(2026, 6, 1), new_due_date=date(2026, 9, 1), reason="a")
    twice = apply(once.complaint, "extend", date(2026, 8, 3), days=30, reason="b")

    deadline = twice.complaint.deadline(1, DeadlineKind.RESPOND)
    assert deadline is not None
    assert deadline.due_date == date(2026, 10, 13)
    assert deadline.extension_reason == "b"


def test_statutory_working_days_ignore_council_closure_days() -> None:
    """2006 regulations, reg. 2, and the 2009 regulations: a working day is any day but a
    weekend or a bank holiday; a council's closure days do not stop the statutory clock."""
    closed = WorkingDayCalendar([date(2026, 1, 7)])
    ctx = context(closed)

    childrens = apply(None, "open", date(2026, 1, 5), ctx=ctx, service_area="childrens_social_care")
    corporate = apply(None, "open", date(2026, 1, 5), ctx=ctx, service_area="waste")

    assert due(childrens.complaint, 1, DeadlineKind.RESPOND) == date(2026, 1, 19)
    assert due(corporate.complaint, 1, DeadlineKind.ACKNOWLEDGE) == date(2026, 1, 13)
    assert childrens.complaint.procedure is ComplaintProcedure.CHILDRENS_SOCIAL_CARE


# -- 5. refusals and the responder -----------------------------------------------------


def test_refusing_an_escalation_is_its_own_event_with_a_listed_reason_and_its_text() -> None:
    """DOMAIN.md: refusing an escalation is its own recorded decision with a reason (outside
    the window, over 12 months old, legal proceedings, already considered, or other)."""
    complaint = responded()

    refusal = apply(
        complaint,
        "refuse_escalation",
        date(2026, 1, 20),
        reason="other",
        detail="the same matter was decided in 2025",
    )

    payload: Any = payload_of(refusal, 0)
    assert (payload.reason.value, payload.detail_recorded) == ("other", True)
    # The detail is kept with the case, not on the event kept for ever (issue 12, item 7).
    assert refusal.complaint.history[-2].detail == "other: the same matter was decided in 2025"
    closed: Any = payload_of(refusal, 1)
    assert closed.closed_because is CloseReason.ESCALATION_REFUSED
    assert refusal.complaint.refused == "other"
    with pytest.raises(ValidationError, match="needs its detail"):
        action("refuse_escalation", ID, "r", london_at(date(2026, 1, 20)), reason="other")


def test_the_stage_two_responder_is_compared_ignoring_case_and_spaces() -> None:
    """Code: the stage 2 response is by someone other than the stage 1 responder."""
    requested = apply(responded(), "request_escalation", date(2026, 1, 20)).complaint
    stage_2 = apply(requested, "acknowledge", date(2026, 1, 21)).complaint

    assert refused(stage_2, "respond", date(2026, 2, 2), responder=" OFFICER-1 ") is (
        RefusalReason.SAME_RESPONDER
    )


# -- 6. learning actions ----------------------------------------------------------------


def test_learning_actions_are_tracked_until_done_on_time_or_late() -> None:
    """DOMAIN.md: a learning action has an owner team and a due date and is tracked until
    done (the seeds' SMART actions reported to committee)."""
    opened = apply(None, "open", date(2026, 1, 5)).complaint
    acknowledged = apply(opened, "acknowledge", date(2026, 1, 6)).complaint
    learning = [
        {"description": "Retrain crews", "owner_team": "waste-ops", "due_date": "2026-02-27"},
        {"description": "Fix the form", "owner_team": "digital", "due_date": "2026-01-30"},
    ]
    answered = apply(acknowledged, "respond", date(2026, 1, 14), learning_actions=learning)

    first = apply(
        answered.complaint, "complete_learning_action", date(2026, 2, 20), learning_action_id="1.1"
    )
    second = apply(
        first.complaint, "complete_learning_action", date(2026, 2, 2), learning_action_id="1.2"
    )

    payload: Any = payload_of(answered, 0)
    assert [a.learning_action_id for a in payload.learning_actions] == ["1.1", "1.2"]
    on_time: Any = payload_of(first, 0)
    late: Any = payload_of(second, 0)
    assert (on_time.on_time, late.on_time) == (True, False)
    assert [a.completed_on for a in second.complaint.learning_actions] == [
        date(2026, 2, 20),
        date(2026, 2, 2),
    ]
    assert refused(
        second.complaint, "complete_learning_action", date(2026, 3, 1), learning_action_id="1.1"
    ) is (RefusalReason.ALREADY_DONE)
    assert refused(
        second.complaint, "complete_learning_action", date(2026, 3, 1), learning_action_id="9.9"
    ) is (RefusalReason.UNKNOWN_LEARNING_ACTION)


def test_a_state_saved_before_windows_had_their_own_record_still_lapses() -> None:
    """docs/production.md: stored state outlives a release; a complaint responded under
    the old model (only `escalation_window_ends`) keeps its window and lapses on time."""
    legacy = responded().model_dump(mode="json", exclude={"escalation_window"})
    legacy["escalation_window_ends"] = "2026-02-11"

    complaint = Complaint.model_validate(legacy)
    closed = lapse(complaint, now=end_of_local_day(date(2026, 2, 11)), recorded_at=RECORDED_AT)

    assert complaint.escalation_window_ends == date(2026, 2, 11)
    # The timer migration 002 backfills for such states, by the same id and instant.
    timer = wanted_timers(complaint)[f"{ID}/1:escalation_window"]
    assert timer.due_at == end_of_local_day(date(2026, 2, 11))
    assert closed is not None
    assert closed.complaint.status is Status.CLOSED
