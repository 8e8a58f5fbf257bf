"""Reconcile the ledger of what was sent with what the system did, problem by problem."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from civicpulse.simulation.ledger import (
    BREACH,
    BadRecord,
    ComplaintReplay,
    Ledger,
    distinct_ids,
)
from shared.topics import COMPLAINT_ACTIONS


@dataclass(frozen=True, slots=True)
class Observed:
    """What the system published and reports, read after the fault."""

    contact_events: list[dict[str, Any]]
    complaint_events: list[dict[str, Any]]
    feedback_events: list[dict[str, Any]]
    dead_letters: list[tuple[str, bytes, str]]  # topic, original bytes, reason + error type
    kpis: dict[str, tuple[float | None, float | None]]  # kpi -> numerator, denominator
    complaint_states: dict[str, str | None]  # complaint id -> status (None: unknown)


@dataclass
class Reconciliation:
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def check(self, name: str, expected: int, problems: list[str]) -> None:
        self.counts[name] = expected
        self.problems += problems


def reconcile(ledger: Ledger, observed: Observed) -> Reconciliation:
    """Every expectation of the ledger against what the system did; problems named one by one."""
    result = Reconciliation()
    seen = distinct_ids(observed.contact_events, "event_type", "contact_id")
    expected = ledger.contact_events()
    result.check(
        "contact events",
        sum(expected.values()),
        [
            f"{key[0]} of {key[1]}: {len(seen.get(key, ()))} events for {count} records"
            for key, count in expected.items()
            if len(seen.get(key, ())) != count
        ],
    )
    replays = ledger.complaints()
    complaint_seen = distinct_ids(observed.complaint_events, "complaint_id", "event_type")
    problems = []
    for complaint_id, replay in replays.items():
        for event_type, count in replay.events.items():
            got = len(complaint_seen.get((complaint_id, event_type), ()))
            if got != count:
                problems.append(f"{complaint_id}: {got} {event_type} for {count} expected")
    result.check(
        "complaint events", sum(sum(r.events.values()) for r in replays.values()), problems
    )
    result.check(
        "complaint states",
        len(replays),
        [
            f"{complaint_id}: {observed.complaint_states.get(complaint_id)}, expected {status}"
            for complaint_id, replay in replays.items()
            if observed.complaint_states.get(complaint_id)
            != (status := replay.complaint.status.value if replay.complaint else None)
        ],
    )

    fired = distinct_ids(
        (e for e in observed.complaint_events if e["event_type"] == BREACH),
        "complaint_id",
        "payload.stage",
        "payload.deadline",
    )
    breaches = ledger.breaches(replays)
    problems = []
    breach_kpi = [0, 0]
    for complaint_id, expected_breaches in breaches.items():
        corporate = not replays[complaint_id].complaint.statutory  # type: ignore[union-attr]
        due = expected_breaches.must | expected_breaches.may
        for timer_id in due:
            got = len(fired.get(_fired_key(complaint_id, timer_id), ()))
            must = timer_id in expected_breaches.must
            if (must and got != 1) or got > 1:
                wanted = "once" if must else "at most once"
                problems.append(f"{complaint_id} {timer_id}: breached {got} times, {wanted}")
            if corporate:
                breach_kpi[0] += must
                breach_kpi[1] += 1
        allowed = {_fired_key(complaint_id, timer_id) for timer_id in due}
        unexpected = {key for key in fired if key[0] == complaint_id} - allowed
        problems += [f"{complaint_id}: breach of {key[1:]} not due" for key in unexpected]
    result.check(
        "deadlines that must breach", sum(len(b.must) for b in breaches.values()), problems
    )
    result.counts["deadlines that may breach (issue 11)"] = sum(
        len(b.may) for b in breaches.values()
    )

    surveys = ledger.survey_cases(replays)
    requested = distinct_ids(
        (e for e in observed.feedback_events if e["event_type"] == "SatisfactionRequested"),
        "payload.case_type",
        "payload.case_id",
    )
    mine = {case for case in requested if case in surveys or _ours(ledger, replays, case)}
    result.check(
        "survey requests",
        len(surveys),
        [
            f"{case}: {len(requested.get(case, ()))} requests"
            for case in surveys
            if len(requested.get(case, ())) != 1
        ]
        + [f"{case}: surveyed, not eligible" for case in mine - surveys],
    )
    responded = distinct_ids(
        (e for e in observed.feedback_events if e["event_type"] == "SatisfactionResponded"),
        "request_id",
    )
    result.check(
        "survey answers",
        len(ledger.answers),
        [
            f"answer to {rid}: {len(responded.get((rid,), ()))} events"
            for rid in ledger.answers
            if len(responded.get((rid,), ())) != 1
        ],
    )

    figures = ledger.kpis(replays, len(surveys))
    problems = [
        f"KPI {name}: {observed.kpis.get(name)} for {figure.numerator}/{figure.denominator}"
        for name, figure in figures.items()
        if not figure.matches(*observed.kpis.get(name, (None, None)))
    ]
    got_breaches = (observed.kpis.get("complaint_deadline_breaches") or (0, None))[0] or 0
    if not breach_kpi[0] <= got_breaches <= breach_kpi[1]:
        problems.append(f"KPI complaint_deadline_breaches: {got_breaches} outside {breach_kpi}")
    result.check("KPI figures", len(figures) + 1, problems)

    letters = observed.dead_letters
    refused = [
        BadRecord(COMPLAINT_ACTIONS.name, json.dumps(body).encode(), reason)
        for replay in replays.values()
        for body, reason in replay.refused
    ]
    result.check(
        "bad records and refused actions dead-lettered",
        len(ledger.bad) + len(refused),
        [
            f"{bad.value[:60]!r}: not dead-lettered from {bad.topic} with reason {bad.reason}"
            for bad in (*ledger.bad, *refused)
            if not any(
                t == bad.topic and o == bad.value and bad.reason in why for t, o, why in letters
            )
        ],
    )
    return result


def _fired_key(complaint_id: str, timer_id: str) -> tuple[Any, ...]:
    """The key of a breach event for a deadline's timer id (`<stage>:<kind>`)."""
    stage, kind = timer_id.split(":")
    return (complaint_id, int(stage), kind)


def _ours(ledger: Ledger, replays: Mapping[str, ComplaintReplay], case: tuple[Any, ...]) -> bool:
    case_type, case_id = case
    if case_type == "complaint":
        return case_id in replays
    return any(body["contact_id"] == case_id for body in ledger.contacts())
