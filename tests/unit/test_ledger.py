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

    assert f"{complaint_id} 1:acknowledge: breached 0 times, once" in never.problems
    assert f"{complaint_id} 1:acknowledge: breached 2 times, once" in twice.problems
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
