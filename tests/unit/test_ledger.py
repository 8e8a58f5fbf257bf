"""The fault tests' ledger and reconciliation: each check fails when its effect is wrong."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from civicpulse.simulation.ledger import BadRecord, Ledger
from civicpulse.simulation.plan import Outgoing, Route
from civicpulse.simulation.reconcile import Observed, reconcile
from services.complaints.domain import complaint_id_for_contact

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def contact(contact_id: str, at: datetime, **fields: Any) -> Outgoing:
    body = {
        "record_type": "contact_received",
        "idempotency_key": f"{contact_id}:received",
        "source": "simulator",
        "contact_id": contact_id,
        "occurred_at": at.isoformat(),
        "channel": "web",
        "service_area": "waste",
        "kind": "enquiry",
        "customer_ref": "CUST-1",
        **fields,
    }
    return Outgoing(at, Route.RAW_TOPIC, contact_id, body)


def event(event_type: str, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"event_type": event_type, "event_id": event_id or str(uuid.uuid4()), **fields}


def observed(**overrides: Any) -> Observed:
    fields: dict[str, Any] = {
        "contact_events": [],
        "complaint_events": [],
        "feedback_events": [],
        "dead_letters": [],
        "kpis": {},
        "complaint_states": {},
    }
    return Observed(**{**fields, **overrides})


def ledger_with(*items: Outgoing) -> Ledger:
    ledger = Ledger(now=NOW)
    for item in items:
        ledger.sent(item)
    return ledger


def test_a_lost_contact_event_is_named() -> None:
    ledger = ledger_with(contact("C1", NOW - timedelta(hours=1)))

    result = reconcile(ledger, observed())

    assert "ContactReceived of C1: 0 events for 1 records" in result.problems


def test_a_record_published_twice_under_one_id_is_one_event_but_two_ids_are_a_double() -> None:
    ledger = ledger_with(contact("C1", NOW - timedelta(hours=1)))
    same = event("ContactReceived", "e1", contact_id="C1")
    other = event("ContactReceived", "e2", contact_id="C1")

    once = reconcile(ledger, observed(contact_events=[same, same]))
    twice = reconcile(ledger, observed(contact_events=[same, other]))

    assert not [p for p in once.problems if "C1" in p and "ContactReceived" in p]
    assert "ContactReceived of C1: 2 events for 1 records" in twice.problems


def test_an_overdue_acknowledgement_must_be_breached_exactly_once() -> None:
    """Complaint Handling Code 4.1: a stage 1 complaint is acknowledged within 5 working days."""
    ledger = ledger_with(contact("C9", NOW - timedelta(days=21), kind="complaint"))
    complaint_id = complaint_id_for_contact("C9")

    def breach() -> dict[str, Any]:
        return event(
            "ComplaintDeadlineBreached",
            complaint_id=complaint_id,
            payload={"stage": 1, "deadline": "acknowledge"},
        )

    never = reconcile(ledger, observed())
    twice = reconcile(ledger, observed(complaint_events=[breach(), breach()]))

    assert (
        f"{complaint_id} 1:acknowledge: breached 0 times, corrected 0, expected net 1"
        in never.problems
    )
    assert (
        f"{complaint_id} 1:acknowledge: breached 2 times, corrected 0, expected net 1"
        in twice.problems
    )
    assert f"{complaint_id}: None, expected received" in never.problems


def test_a_kpi_figure_that_differs_from_the_ledger_is_named() -> None:
    ledger = ledger_with(contact("C1", NOW - timedelta(hours=1)), contact("C2", NOW))

    result = reconcile(ledger, observed(kpis={"contacts_received": (1.0, None)}))

    assert any(
        p.startswith("KPI contacts_received: (1.0, None) for 2/None") for p in result.problems
    )


def test_a_bad_record_missing_from_its_dead_letter_topic_is_named() -> None:
    ledger = Ledger(now=NOW)
    bad = BadRecord("civicpulse.contacts.raw", b"{not json", "invalid_json")
    ledger.bad_record(bad)

    missing = reconcile(ledger, observed())
    wrong_reason = reconcile(
        ledger, observed(dead_letters=[(bad.topic, bad.value, "invalid_record")])
    )
    right = reconcile(ledger, observed(dead_letters=[(bad.topic, bad.value, "invalid_json x")]))

    assert any("not dead-lettered" in p for p in missing.problems)
    assert any("not dead-lettered" in p for p in wrong_reason.problems)
    assert not any("not dead-lettered" in p for p in right.problems)


def test_a_resolved_enquiry_is_surveyed_once_and_a_compliment_never() -> None:
    ledger = ledger_with(
        contact("C1", NOW - timedelta(hours=2), resolved_at_first_contact=True),
        contact("C2", NOW - timedelta(hours=2), kind="compliment", resolved_at_first_contact=True),
    )

    def request(case_id: str) -> dict[str, Any]:
        return event("SatisfactionRequested", payload={"case_type": "contact", "case_id": case_id})

    result = reconcile(ledger, observed(feedback_events=[request("C1"), request("C2")]))
    assert ledger.survey_cases(ledger.complaints()) == {("contact", "C1")}
    assert "('contact', 'C2'): surveyed, not eligible" in result.problems


def test_a_refused_case_action_must_be_dead_lettered_as_refused() -> None:
    opened = contact("C5", NOW - timedelta(days=3), kind="complaint")
    complaint_id = complaint_id_for_contact("C5")
    close = {
        "action": "close",
        "action_id": f"{complaint_id}:1",
        "complaint_id": complaint_id,
        "source": "case-manager",
        "occurred_at": (NOW - timedelta(days=1)).isoformat(),
    }  # no reason: closing an unanswered complaint refuses it, which needs one
    ledger = ledger_with(opened, Outgoing(NOW, Route.CASE_ACTION, complaint_id, close))

    result = reconcile(ledger, observed())
    letter = (
        "civicpulse.complaints.actions",
        json.dumps(close).encode(),
        "refused reason_required",
    )
    fixed = reconcile(ledger, observed(dead_letters=[letter]))

    assert any("not dead-lettered from civicpulse.complaints.actions" in p for p in result.problems)
    assert not any("not dead-lettered" in p for p in fixed.problems)


def action(complaint_id: str, number: int, name: str, at: datetime, **fields: Any) -> Outgoing:
    body = {
        "action": name,
        "action_id": f"{complaint_id}:{number}",
        "complaint_id": complaint_id,
        "source": "case-manager",
        "occurred_at": at.isoformat(),
        **fields,
    }
    return Outgoing(at, Route.CASE_ACTION, complaint_id, body)


def transfer(contact_id: str, at: datetime, hop: int = 0) -> Outgoing:
    body = {
        "record_type": "contact_transferred",
        "idempotency_key": f"{contact_id}:transferred:{hop}",
        "source": "simulator",
        "contact_id": contact_id,
        "occurred_at": at.isoformat(),
        "from_team": "reception",
        "to_team": "waste",
        "service_area": "waste",
    }
    return Outgoing(at, Route.RAW_TOPIC, contact_id, body)


def kpi_problems(ledger: Ledger, name: str, figure: tuple[float | None, float | None]) -> list[str]:
    result = reconcile(ledger, observed(kpis={name: figure}))
    return [p for p in result.problems if p.startswith(f"KPI {name}:")]


def breach_event(
    complaint_id: str, event_type: str = "ComplaintDeadlineBreached"
) -> dict[str, Any]:
    return event(
        event_type, complaint_id=complaint_id, payload={"stage": 1, "deadline": "acknowledge"}
    )


def breach_problems(ledger: Ledger, complaint_id: str, events: list[dict[str, Any]]) -> list[str]:
    result = reconcile(ledger, observed(complaint_events=events))
    return [p for p in result.problems if p.startswith(complaint_id) and "breach" in p]


def test_first_contact_resolution_is_lost_to_a_re_contact_within_seven_days_or_a_transfer() -> None:
    """DOMAIN.md, KPIs: resolved at first contact with no transfer and no re-contact from the
    same customer about the same service area within a window (7 days by default) / contacts
    received (enquiries and service requests); reported, provisional, before the window ends."""
    start = NOW - timedelta(days=12)
    ledger = ledger_with(
        contact("R1", start, resolved_at_first_contact=True),  # re-contacted 6 days later: lost
        contact("R2", start + timedelta(days=6), kind="complaint"),  # not eligible itself
        contact("K1", start, customer_ref="CUST-2", resolved_at_first_contact=True),
        contact("K2", start + timedelta(days=8), customer_ref="CUST-2"),  # after the window
        contact("A1", start, customer_ref="CUST-3", resolved_at_first_contact=True),
        contact("A2", start, customer_ref="CUST-3", service_area="housing"),  # another area
        contact("T1", start, customer_ref="CUST-4", resolved_at_first_contact=True),
        transfer("T1", start + timedelta(minutes=2)),  # a later transfer loses it
        contact("X1", start, customer_ref="CUST-5", resolved_at_first_contact=True, transfers=1),
        contact("N1", start, customer_ref="CUST-6"),  # not resolved first time
    )
    # Eligible: R1, K1, K2, A1, T1, X1, N1 (A2 is an enquiry too): 8. Kept: K1, A1.
    assert ledger.kpis(ledger.complaints(), 0)["first_contact_resolution"].matches(2, 8)
    assert not kpi_problems(ledger, "first_contact_resolution", (2.0, 8.0))
    assert kpi_problems(ledger, "first_contact_resolution", (3.0, 8.0))  # a re-contact lost
    assert kpi_problems(ledger, "first_contact_resolution", (2.0, 16.0))  # doubled
    assert kpi_problems(ledger, "first_contact_resolution", (None, None))  # not reported


def test_transfers_count_the_receipt_and_each_transfer_record_and_the_call_once() -> None:
    """DOMAIN.md, KPIs: answered first time by the right team = calls with zero transfers /
    calls answered; transfer rate counts a call once however often it was transferred;
    docs/metrics.md: transfers at receipt plus each ContactTransferred."""
    at = NOW - timedelta(hours=3)
    ledger = ledger_with(
        contact("P1", at, channel="phone", transfers=1),
        transfer("P1", at + timedelta(minutes=2)),
        transfer("P1", at + timedelta(minutes=4), hop=1),
        contact("P2", at, channel="phone"),
        contact("W1", at, transfers=2),  # not a call: no call KPI counts it
    )
    figures = ledger.kpis(ledger.complaints(), 0)
    assert figures["transfer_rate"].matches(1, 2)
    assert figures["average_transfers_per_call"].matches(3, 2)
    assert figures["answered_first_time_by_right_team"].matches(1, 2)
    assert kpi_problems(ledger, "transfer_rate", (2.0, 2.0))  # counted per transfer
    assert kpi_problems(ledger, "average_transfers_per_call", (1.0, 2.0))  # records lost
    assert kpi_problems(ledger, "average_transfers_per_call", (6.0, 4.0))  # doubled
    assert kpi_problems(ledger, "answered_first_time_by_right_team", (2.0, 2.0))
    assert not kpi_problems(ledger, "answered_first_time_by_right_team", (1.0, 2.0))


def late_and_on_time(now: datetime = NOW) -> tuple[Ledger, str, str]:
    """Two corporate complaints opened 12 days ago (due in 5 working days): one acknowledged
    on time (2 days later), one late (9 days later); neither response due yet."""
    opened = now - timedelta(days=12)
    on_time, late = complaint_id_for_contact("OT"), complaint_id_for_contact("LT")
    ledger = ledger_with(
        contact("OT", opened, kind="complaint", customer_ref="CUST-OT"),
        action(on_time, 1, "acknowledge", opened + timedelta(days=2)),
        contact("LT", opened, kind="complaint", customer_ref="CUST-LT"),
        action(late, 1, "acknowledge", opened + timedelta(days=9)),
    )
    return ledger, on_time, late


def test_acknowledgements_within_target_are_judged_by_date() -> None:
    """Complaint Handling Code 4.1: acknowledged within 5 working days of receipt; issue 11:
    on time when the action's local date is on or before the due date, whatever arrives
    first. Only deadlines with a known outcome count (the respond deadlines are not due)."""
    ledger, _, _ = late_and_on_time()
    figures = ledger.kpis(ledger.complaints(), 0)
    assert figures["complaints_acknowledged_within_target"].matches(1, 2)
    assert figures["complaints_responded_within_target"].matches(0, 0)
    assert figures["complaint_deadline_breaches"].matches(1, None)
    name = "complaints_acknowledged_within_target"
    assert not kpi_problems(ledger, name, (1.0, 2.0))
    assert kpi_problems(ledger, name, (2.0, 2.0))  # the late one counted on time
    assert kpi_problems(ledger, name, (0.0, 2.0))  # the corrected breach not honoured
    assert kpi_problems(ledger, name, (2.0, 4.0))  # doubled
    assert kpi_problems(ledger, "complaint_deadline_breaches", (0.0, None))
    assert kpi_problems(ledger, "complaint_deadline_breaches", (2.0, None))  # uncorrected
    assert not kpi_problems(ledger, "complaint_deadline_breaches", (1.0, None))


def test_a_breach_corrected_by_an_on_time_action_nets_none_and_a_late_one_nets_one() -> None:
    """Issue 11 item 3: a late action arriving before the timer emits the missing breach;
    an on-time action arriving after the breach emits a correction. Each deadline nets one
    breach or none, whatever the order."""
    ledger, on_time, late = late_and_on_time()
    breach, correction = (
        breach_event(on_time),
        breach_event(on_time, "ComplaintDeadlineBreachCorrected"),
    )

    assert not breach_problems(ledger, on_time, [])  # the action came first
    assert not breach_problems(ledger, on_time, [breach, correction])  # the timer came first
    assert breach_problems(ledger, on_time, [breach])  # the correction lost
    assert breach_problems(ledger, on_time, [breach, breach_event(on_time), correction])
    assert breach_problems(ledger, on_time, [correction])  # a correction of nothing
    assert breach_problems(
        ledger,
        on_time,
        [breach, correction, breach_event(on_time, "ComplaintDeadlineBreachCorrected")],
    )

    late_breach = breach_event(late)
    assert not breach_problems(ledger, late, [late_breach])
    assert breach_problems(ledger, late, [])  # lost
    assert breach_problems(ledger, late, [late_breach, breach_event(late)])  # doubled
    assert breach_problems(
        ledger, late, [late_breach, breach_event(late, "ComplaintDeadlineBreachCorrected")]
    )  # a late action must not correct


def test_a_stage_1_complaint_whose_window_lapsed_is_expected_closed_by_the_service() -> None:
    """Issue 11 item 1: when a stage's escalation window (20 working days, corporate) ends
    without a request, a timer closes the complaint (`escalation_window_lapsed`); the
    plan sends no close for it."""
    opened = NOW - timedelta(days=50)
    complaint_id = complaint_id_for_contact("LP")
    ledger = ledger_with(
        contact("LP", opened, kind="complaint"),
        action(complaint_id, 1, "acknowledge", opened + timedelta(days=1)),
        action(
            complaint_id,
            2,
            "respond",
            opened + timedelta(days=5),
            outcome="upheld",
            responder="officer-1",
            learning_actions=[],
        ),
    )
    replay = ledger.complaints()[complaint_id]
    assert replay.complaint is not None
    assert replay.complaint.status.value == "closed"
    assert replay.events["ComplaintClosed"] == 1

    result = reconcile(ledger, observed(complaint_states={complaint_id: "responded"}))
    assert f"{complaint_id}: responded, expected closed" in result.problems
    assert f"{complaint_id}: 0 ComplaintClosed for 1 expected" in result.problems


def test_a_kpi_the_api_returns_that_is_neither_reconciled_nor_listed_is_named() -> None:
    ledger = ledger_with(contact("C1", NOW - timedelta(hours=1)))

    result = reconcile(ledger, observed(kpis={"new_kpi": (1.0, None)}))

    assert any(p.startswith("KPI new_kpi: returned by GET /v1/kpis") for p in result.problems)


def test_open_complaints_now_are_those_neither_closed_nor_withdrawn_by_scope_and_stage() -> None:
    """DOMAIN.md, KPIs: complaints open by stage, corporate and statutory counted apart."""
    opened = NOW - timedelta(days=2)
    withdrawn = complaint_id_for_contact("O2")
    ledger = ledger_with(
        contact("O1", opened, kind="complaint", customer_ref="CUST-O1"),
        contact("O2", opened, kind="complaint", customer_ref="CUST-O2"),
        action(withdrawn, 1, "withdraw", opened + timedelta(days=1), reason="resolved"),
        contact("O3", opened, kind="complaint", service_area="adult_social_care"),
    )

    def problems(open_now: dict[tuple[str, int], int]) -> list[str]:
        result = reconcile(ledger, observed(open_complaints=open_now))
        return [p for p in result.problems if p.startswith("open complaints")]

    assert not problems({("corporate", 1): 1, ("statutory", 1): 1})
    assert problems({("statutory", 1): 1})  # lost
    assert problems({("corporate", 1): 2, ("statutory", 1): 1})  # the withdrawal not honoured
    assert problems({("corporate", 2): 1, ("statutory", 1): 1})  # wrong stage


def test_an_unexpected_complaint_event_is_named_and_a_lapse_a_request_undid_is_allowed() -> None:
    """Issue 11 item 1: an escalation request dated inside the window reopens a case the
    lapse timer closed because the request arrived after the window's end had passed."""
    opened = NOW - timedelta(days=60)
    complaint_id = complaint_id_for_contact("RQ")
    ledger = ledger_with(
        contact("RQ", opened, kind="complaint"),
        action(complaint_id, 1, "acknowledge", opened + timedelta(days=1)),
        action(
            complaint_id,
            2,
            "respond",
            opened + timedelta(days=5),
            outcome="upheld",
            responder="officer-1",
            learning_actions=[],
        ),
        action(complaint_id, 3, "request_escalation", opened + timedelta(days=10)),
    )

    def closed(times: int) -> list[str]:
        events = [event("ComplaintClosed", complaint_id=complaint_id) for _ in range(times)]
        result = reconcile(ledger, observed(complaint_events=events))
        return [p for p in result.problems if p.endswith("ComplaintClosed for 0 expected")]

    assert not closed(0)
    assert not closed(1)
    assert closed(2)
    withdrawn = reconcile(
        ledger, observed(complaint_events=[event("ComplaintWithdrawn", complaint_id=complaint_id)])
    )
    assert f"{complaint_id}: 1 ComplaintWithdrawn for 0 expected" in withdrawn.problems
