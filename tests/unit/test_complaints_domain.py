"""The complaint lifecycle as pure code: transitions, refusals and the deadlines they set."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.complaints.domain import (
    Complaint,
    Context,
    Decision,
    Refusal,
    RefusalReason,
    Status,
    breach,
    decide,
    invariant_violations,
    lapse,
    recalculate,
)
from services.complaints.procedures import Policy
from services.complaints.working_days import WorkingDayCalendar, end_of_local_day
from shared.events.vocabulary import ComplaintProcedure, DeadlineKind
from tests.support.complaints import action, london_at

CALENDAR = WorkingDayCalendar()
CONTEXT = Context(CALENDAR, Policy(), recorded_at=datetime(2026, 1, 1, tzinfo=UTC))
MONDAY = date(2026, 1, 12)
ID = "CMP-1"


def apply(complaint: Complaint | None, kind: str, day: date, **fields: Any) -> Decision:
    outcome = decide(
        complaint,
        action(kind, ID, f"{kind}-{day}-{len(fields)}", london_at(day), **fields),
        CONTEXT,
    )
    assert isinstance(outcome, Decision), outcome
    return outcome


def refusal(complaint: Complaint | None, kind: str, day: date, **fields: Any) -> Refusal:
    outcome = decide(complaint, action(kind, ID, f"{kind}-x", london_at(day), **fields), CONTEXT)
    assert isinstance(outcome, Refusal), outcome
    return outcome


def due(complaint: Complaint, stage: int, kind: DeadlineKind) -> date:
    deadline = complaint.deadline(stage, kind)
    assert deadline is not None
    return deadline.due_date


def opened(service_area: str = "waste", day: date = MONDAY) -> Complaint:
    return apply(None, "open", day, service_area=service_area).complaint


def acknowledged(day: date = MONDAY) -> Complaint:
    return apply(opened(), "acknowledge", day).complaint


def responded(day: date = date(2026, 1, 20), responder: str = "officer-1") -> Complaint:
    return apply(acknowledged(), "respond", day, responder=responder).complaint


def payload_of(decision: Decision) -> Any:
    """The first event's payload (the events are typed by their common base)."""
    event: Any = decision.events[0]
    return event.payload


def types(decision: Decision) -> list[str]:
    return [event.event_type for event in decision.events]


# -- stage 1 ----------------------------------------------------------------------


def test_a_corporate_complaint_must_be_acknowledged_within_five_working_days() -> None:
    decision = apply(None, "open", MONDAY)

    assert types(decision) == ["ComplaintOpened"]
    assert decision.complaint.status is Status.RECEIVED
    assert due(decision.complaint, 1, DeadlineKind.ACKNOWLEDGE) == date(2026, 1, 19)
    assert not payload_of(decision).statutory


def test_the_stage_one_response_is_due_ten_working_days_after_acknowledgement() -> None:
    decision = apply(opened(), "acknowledge", date(2026, 1, 14))

    assert types(decision) == ["ComplaintAcknowledged"]
    ack = decision.complaint.deadline(1, DeadlineKind.ACKNOWLEDGE)
    assert ack is not None
    assert ack.met_on == date(2026, 1, 14)
    assert not ack.pending
    assert due(decision.complaint, 1, DeadlineKind.RESPOND) == date(2026, 1, 28)


def test_responding_before_acknowledging_is_refused_with_the_reason() -> None:
    refused = refusal(opened(), "respond", MONDAY)

    assert refused.reason is RefusalReason.WRONG_STATE
    assert "received" in refused.message
    assert "acknowledged" in refused.message


def test_an_action_on_an_unknown_complaint_is_refused() -> None:
    assert refusal(None, "acknowledge", MONDAY).reason is RefusalReason.UNKNOWN_COMPLAINT


def test_opening_a_complaint_twice_is_refused() -> None:
    assert refusal(opened(), "open", MONDAY).reason is RefusalReason.ALREADY_OPEN


def test_a_response_records_outcome_responder_and_learning_actions() -> None:
    learning = [{"description": "Retrain crews on assisted collections", "owner_team": "waste"}]

    decision = apply(
        acknowledged(),
        "respond",
        date(2026, 1, 20),
        outcome="partly_upheld",
        learning_actions=learning,
    )

    payload: Any = payload_of(decision)
    assert (payload.outcome, payload.responder, payload.stage) == ("partly_upheld", "officer-1", 1)
    assert payload.learning_actions[0].owner_team == "waste"
    assert decision.complaint.escalation_window_ends == date(2026, 2, 17)


# -- extensions -------------------------------------------------------------------


def test_one_extension_moves_the_response_deadline_by_working_days() -> None:
    decision = apply(acknowledged(), "extend", date(2026, 1, 20), days=10, reason="site visit")

    assert types(decision) == ["ComplaintDeadlineExtended"]
    assert due(decision.complaint, 1, DeadlineKind.RESPOND) == date(2026, 2, 9)
    payload: Any = payload_of(decision)
    assert payload.new_due_date == date(2026, 2, 9)
    # The reason is kept with the case, not on the event (issue 12, item 7).
    assert "site visit" not in payload.model_dump_json()
    [deadline] = [d for d in decision.complaint.deadlines if d.kind is DeadlineKind.RESPOND]
    assert deadline.extension_reason == "site visit"
    assert decision.complaint.history[-1].detail == "site visit"


def test_an_extension_to_a_given_date_counts_the_working_days_added() -> None:
    decision = apply(acknowledged(), "extend", MONDAY, new_due_date=date(2026, 2, 2), reason="r")

    extended = decision.complaint.deadline(1, DeadlineKind.RESPOND)
    assert extended is not None
    assert extended.extension_days == 5
    assert extended.due_date == date(2026, 2, 2)


def test_a_second_extension_is_refused() -> None:
    once = apply(acknowledged(), "extend", MONDAY, days=2, reason="r").complaint

    assert (
        refusal(once, "extend", MONDAY, days=2, reason="r").reason is RefusalReason.ALREADY_EXTENDED
    )


def test_an_extension_beyond_ten_working_days_at_stage_one_is_refused() -> None:
    refused = refusal(acknowledged(), "extend", MONDAY, days=11, reason="r")

    assert refused.reason is RefusalReason.EXTENSION_TOO_LONG


def test_an_extension_to_a_bank_holiday_is_refused() -> None:
    refused = refusal(acknowledged(), "extend", MONDAY, new_due_date=date(2026, 4, 6), reason="r")

    assert refused.reason is RefusalReason.NOT_A_WORKING_DAY


def test_an_extension_after_the_deadline_passed_is_refused() -> None:
    refused = refusal(acknowledged(), "extend", date(2026, 1, 27), days=2, reason="r")

    assert refused.reason is RefusalReason.DEADLINE_PASSED


def test_the_acknowledgement_deadline_cannot_be_extended() -> None:
    refused = refusal(opened(), "extend", MONDAY, deadline="acknowledge", days=2, reason="r")

    assert refused.reason is RefusalReason.NOT_EXTENDABLE


# -- stage 2 and the ombudsman --------------------------------------------------------


def test_a_complaint_flows_through_both_stages_to_the_ombudsman() -> None:
    complaint = responded()
    steps = [
        ("request_escalation", date(2026, 1, 26), {}),
        ("acknowledge", date(2026, 1, 28), {}),
        ("respond", date(2026, 2, 20), {"responder": "head-of-service"}),
        ("refer_to_ombudsman", date(2026, 3, 2), {"ombudsman_reference": "LGO-26-001"}),
        ("close", date(2026, 6, 1), {}),
    ]
    emitted = []
    for kind, day, fields in steps:
        decision = apply(complaint, kind, day, **fields)
        complaint = decision.complaint
        emitted += types(decision)

    assert emitted == [
        "ComplaintEscalationRequested",
        "ComplaintEscalated",
        "ComplaintAcknowledged",
        "ComplaintResponded",
        "ComplaintReferredToOmbudsman",
        "ComplaintClosed",
    ]
    assert (complaint.stage, complaint.status) == (2, Status.CLOSED)
    assert [entry.event_type for entry in complaint.history][:3] == [
        "ComplaintOpened",
        "ComplaintAcknowledged",
        "ComplaintResponded",
    ]


def test_stage_two_deadlines_are_five_and_twenty_working_days() -> None:
    requested = apply(responded(), "request_escalation", date(2026, 1, 26)).complaint
    acknowledged_2 = apply(requested, "acknowledge", date(2026, 1, 28)).complaint

    assert due(requested, 2, DeadlineKind.ACKNOWLEDGE) == date(2026, 2, 2)
    assert due(acknowledged_2, 2, DeadlineKind.RESPOND) == date(2026, 2, 25)
    assert (
        refusal(acknowledged_2, "extend", date(2026, 2, 3), days=21, reason="r").reason
        is RefusalReason.EXTENSION_TOO_LONG
    )


def test_the_stage_two_responder_must_differ_from_the_stage_one_responder() -> None:
    requested = apply(responded(), "request_escalation", date(2026, 1, 26)).complaint
    stage_2 = apply(requested, "acknowledge", date(2026, 1, 27)).complaint

    refused = refusal(stage_2, "respond", date(2026, 2, 2), responder="officer-1")

    assert refused.reason is RefusalReason.SAME_RESPONDER


def test_escalation_after_the_window_is_refused() -> None:
    complaint = responded(date(2026, 1, 20))  # window: 20 working days, to 17 February

    assert apply(complaint, "request_escalation", date(2026, 2, 17)).events
    refused = refusal(complaint, "request_escalation", date(2026, 2, 18))
    assert refused.reason is RefusalReason.ESCALATION_WINDOW_CLOSED


def test_escalating_a_withdrawn_complaint_is_refused() -> None:
    withdrawn = apply(responded(), "withdraw", date(2026, 1, 21)).complaint

    assert (
        refusal(withdrawn, "request_escalation", date(2026, 1, 22)).reason
        is RefusalReason.WRONG_STATE
    )


def test_escalating_beyond_the_last_stage_is_refused() -> None:
    requested = apply(responded(), "request_escalation", date(2026, 1, 26)).complaint
    stage_2 = apply(requested, "acknowledge", date(2026, 1, 27)).complaint
    answered = apply(stage_2, "respond", date(2026, 2, 2), responder="director").complaint

    assert (
        refusal(answered, "request_escalation", date(2026, 2, 3)).reason
        is RefusalReason.FINAL_STAGE
    )


def test_closing_an_unanswered_complaint_needs_a_reason() -> None:
    assert refusal(opened(), "close", MONDAY).reason is RefusalReason.REASON_REQUIRED

    closed = apply(opened(), "close", MONDAY, reason="about events more than 12 months ago")

    assert closed.complaint.status is Status.CLOSED
    assert not closed.complaint.pending_deadlines()


def test_refusing_an_escalation_closes_at_stage_one_with_the_reason() -> None:
    requested = apply(responded(), "request_escalation", date(2026, 1, 26)).complaint

    closed = apply(requested, "close", date(2026, 1, 27), reason="already decided by tribunal")

    payload: Any = payload_of(closed)
    assert (payload.final_stage, payload.reason_recorded) == (1, True)
    assert closed.complaint.refused == "already decided by tribunal"  # kept with the case
    assert not closed.complaint.pending_deadlines()


# -- statutory procedures -------------------------------------------------------------


def test_a_childrens_social_care_complaint_is_statutory_with_ten_working_days_to_respond() -> None:
    decision = apply(None, "open", MONDAY, service_area="childrens_social_care")

    payload: Any = payload_of(decision)
    assert (payload.procedure, payload.statutory) == (
        ComplaintProcedure.CHILDRENS_SOCIAL_CARE,
        True,
    )
    assert decision.complaint.deadline(1, DeadlineKind.ACKNOWLEDGE) is None
    assert due(decision.complaint, 1, DeadlineKind.RESPOND) == date(2026, 1, 26)
    extended = apply(decision.complaint, "extend", MONDAY, days=10, reason="r").complaint
    assert due(extended, 1, DeadlineKind.RESPOND) == date(2026, 2, 9)  # at most 20
    assert refusal(decision.complaint, "extend", MONDAY, days=11, reason="r").reason is (
        RefusalReason.EXTENSION_TOO_LONG
    )


def test_a_childrens_complaint_has_three_stages() -> None:
    complaint = apply(None, "open", MONDAY, service_area="childrens_social_care").complaint
    for stage, responder in ((1, "a"), (2, "b")):
        complaint = apply(complaint, "acknowledge", MONDAY).complaint
        complaint = apply(complaint, "respond", MONDAY, responder=responder).complaint
        complaint = apply(complaint, "request_escalation", MONDAY).complaint
        # Stage 3's first deadline is the review panel's meeting (2006 regs., reg. 19).
        first = DeadlineKind.RESPOND if stage == 1 else DeadlineKind.PANEL_MEETING
        assert complaint.deadline(stage + 1, first) is not None

    complaint = apply(complaint, "acknowledge", MONDAY).complaint
    complaint = apply(complaint, "respond", MONDAY, responder="panel").complaint
    assert complaint.stage == 3
    assert refusal(complaint, "request_escalation", MONDAY).reason is RefusalReason.FINAL_STAGE


def test_an_adult_social_care_complaint_has_one_stage_with_a_six_month_benchmark() -> None:
    complaint = apply(None, "open", date(2026, 2, 28), service_area="adult_social_care").complaint
    complaint = apply(complaint, "acknowledge", date(2026, 3, 2)).complaint

    assert complaint.statutory
    assert due(complaint, 1, DeadlineKind.ACKNOWLEDGE) == date(2026, 3, 4)  # 3 working days
    # Six months "commencing on the day" of receipt end the day before the anniversary
    # (2009 regulations, reg. 14): Thursday 27 August.
    assert due(complaint, 1, DeadlineKind.RESPOND) == date(2026, 8, 27)
    answered = apply(complaint, "respond", date(2026, 5, 1)).complaint
    assert (
        refusal(answered, "request_escalation", date(2026, 5, 2)).reason
        is RefusalReason.FINAL_STAGE
    )


# -- deadlines passing ------------------------------------------------------------------


def test_a_missed_acknowledgement_is_breached_once_after_its_day_ends() -> None:
    complaint = opened()  # acknowledgement due Monday 19 January
    end_of_day = end_of_local_day(date(2026, 1, 19))
    now = {"now": end_of_day, "recorded_at": end_of_day}

    a_second_before = end_of_day - timedelta(seconds=1)
    early = breach(
        complaint, 1, DeadlineKind.ACKNOWLEDGE, now=a_second_before, recorded_at=a_second_before
    )
    first = breach(complaint, 1, DeadlineKind.ACKNOWLEDGE, **now)
    assert first is not None
    second = breach(first.complaint, 1, DeadlineKind.ACKNOWLEDGE, **now)

    assert early is None
    assert types(first) == ["ComplaintDeadlineBreached"]
    assert first.events[0].occurred_at == end_of_day
    assert second is None


def test_an_acknowledgement_in_time_leaves_nothing_to_breach() -> None:
    end_of_day = end_of_local_day(date(2026, 1, 19))

    assert (
        breach(acknowledged(), 1, DeadlineKind.ACKNOWLEDGE, now=end_of_day, recorded_at=end_of_day)
        is None
    )


def test_a_late_acknowledgement_after_a_breach_is_recorded_as_met_late() -> None:
    end_of_day = end_of_local_day(date(2026, 1, 19))
    breached = breach(opened(), 1, DeadlineKind.ACKNOWLEDGE, now=end_of_day, recorded_at=end_of_day)
    assert breached is not None

    late = apply(breached.complaint, "acknowledge", date(2026, 1, 21)).complaint

    ack = late.deadline(1, DeadlineKind.ACKNOWLEDGE)
    assert ack is not None
    assert ack.breached
    assert ack.met_on == date(2026, 1, 21)


def test_a_closure_day_added_moves_running_deadlines_only() -> None:
    complaint = acknowledged(date(2026, 1, 14))  # response due 28 January
    closed = WorkingDayCalendar([date(2026, 1, 20)])

    moved = recalculate(complaint, closed)

    assert due(moved, 1, DeadlineKind.RESPOND) == date(2026, 1, 29)
    assert due(moved, 1, DeadlineKind.ACKNOWLEDGE) == due(complaint, 1, DeadlineKind.ACKNOWLEDGE)


# -- properties ---------------------------------------------------------------------------

ACTION_KINDS = [
    "acknowledge",
    "respond",
    "request_escalation",
    "extend",
    "refer_to_ombudsman",
    "withdraw",
    "close",
    "breach_acknowledge",
    "breach_respond",
    "refuse_escalation",
    "record_panel_meeting",
    "record_panel_report",
    "record_ombudsman_decision",
    "lapse",
]
# What usually moves a case on from each status: the examples draw from these
# most of the time, so they reach the later stages as well as the refusals.
PROGRESS = {
    Status.RECEIVED: ["acknowledge", "extend", "breach_acknowledge", "breach_respond"],
    Status.ACKNOWLEDGED: ["respond", "extend", "breach_respond", "record_panel_meeting"],
    Status.RESPONDED: ["request_escalation", "refer_to_ombudsman", "close", "lapse"],
    Status.ESCALATION_REQUESTED: [
        "acknowledge",
        "extend",
        "breach_acknowledge",
        "refuse_escalation",
    ],
    Status.REFERRED_TO_OMBUDSMAN: ["close", "record_ombudsman_decision"],
    Status.WITHDRAWN: ["close"],
    Status.CLOSED: ACTION_KINDS,
}


def _fields(kind: str, data: st.DataObject) -> dict[str, Any]:
    if kind == "respond":
        return {"responder": data.draw(st.sampled_from(["a", "b", "c"]))}
    if kind == "extend":
        return {"days": data.draw(st.integers(1, 45)), "reason": "agreed with the customer"}
    if kind in ("withdraw", "close"):
        return {"reason": data.draw(st.none() | st.just("a reason"))}
    if kind == "refuse_escalation":
        return {"reason": data.draw(st.sampled_from(["outside_window", "legal_proceedings"]))}
    if kind == "record_ombudsman_decision":
        return {"decision": data.draw(st.sampled_from(["upheld", "not_upheld", "withdrawn"]))}
    return {}


@settings(max_examples=300, deadline=None)
@given(
    area=st.sampled_from(["waste", "adult_social_care", "childrens_social_care"]),
    closed=st.frozensets(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=20),
    data=st.data(),
)
def test_no_sequence_of_actions_reaches_an_illegal_state(
    area: str, closed: frozenset[date], data: st.DataObject
) -> None:
    calendar = WorkingDayCalendar(closed)
    context = Context(calendar, Policy(), recorded_at=CONTEXT.recorded_at)
    day = date(2026, 3, 2)
    first = decide(None, action("open", ID, "open", london_at(day), service_area=area), context)
    assert isinstance(first, Decision)
    complaint = first.complaint
    for n in range(data.draw(st.integers(0, 25))):
        kind = data.draw(
            st.sampled_from(PROGRESS[complaint.status]) | st.sampled_from(ACTION_KINDS)
        )
        day += timedelta(days=data.draw(st.integers(0, 12)))
        if kind.startswith("breach_"):
            stage = complaint.stage + (complaint.status is Status.ESCALATION_REQUESTED)
            end = end_of_local_day(day)
            deadline = DeadlineKind(kind.removeprefix("breach_"))
            outcome: Decision | Refusal | None = breach(
                complaint, stage, deadline, now=end, recorded_at=end
            )
        elif kind == "lapse":
            end = end_of_local_day(day)
            outcome = lapse(complaint, now=end, recorded_at=end)
        else:
            outcome = decide(
                complaint, action(kind, ID, f"a{n}", london_at(day), **_fields(kind, data)), context
            )
        if isinstance(outcome, Decision):
            # A window lapsing on a case already closed by hand only spends the right.
            assert outcome.events or kind == "lapse"
            assert all(e.complaint_id == ID for e in outcome.events)
            complaint = outcome.complaint
        assert list(invariant_violations(complaint, calendar)) == []
        assert complaint.statutory == (area != "waste")
