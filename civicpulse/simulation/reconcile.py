"""Reconcile the ledger of what was sent with what the system did, problem by problem."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from civicpulse.simulation.ledger import (
    BREACH,
    CORRECTION,
    BadRecord,
    Breaches,
    ComplaintReplay,
    Ledger,
    distinct_ids,
)
from shared.topics import COMPLAINT_ACTIONS

# KPIs of `GET /v1/kpis` that the ledger cannot compute from what was sent, each with
# why. Every other KPI the API returns must have the ledger's figure.
UNRECONCILED: dict[str, str] = {}
# Breaches and their corrections are reconciled net, deadline by deadline (below).
NET_EVENTS = frozenset({BREACH, CORRECTION})


@dataclass(frozen=True, slots=True)
class Observed:
    """What the system published and reports, read after the fault."""

    contact_events: list[dict[str, Any]]
    complaint_events: list[dict[str, Any]]
    feedback_events: list[dict[str, Any]]
    dead_letters: list[tuple[str, bytes, str]]  # topic, original bytes, reason + error type
    kpis: dict[str, tuple[float | None, float | None]]  # kpi -> numerator, denominator
    complaint_states: dict[str, str | None]  # complaint id -> status (None: unknown)
    open_complaints: dict[tuple[str, int], int] = field(default_factory=dict)  # scope, stage


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
    seen_types: dict[str, set[str]] = {}
    for complaint_id, event_type in complaint_seen:
        seen_types.setdefault(complaint_id, set()).add(event_type)
    problems = []
    reopened = 0
    for complaint_id, replay in replays.items():
        types = seen_types.get(complaint_id, set()) | set(replay.events)
        for event_type in sorted(types - NET_EVENTS):
            count = replay.events[event_type]
            got = len(complaint_seen.get((complaint_id, event_type), ()))
            extra = replay.lapses_reopened if event_type == "ComplaintClosed" else 0
            reopened += max(0, min(got - count, extra))
            if not count <= got <= count + extra:
                problems.append(f"{complaint_id}: {got} {event_type} for {count} expected")
    result.counts["lapse closes reopened"] = reopened
    result.check(
        "complaint events",
        sum(n for r in replays.values() for t, n in r.events.items() if t not in NET_EVENTS),
        problems,
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

    breaches = ledger.breaches(replays)
    result.check("deadlines breached", *_check_breaches(breaches, observed.complaint_events))
    result.counts["breaches corrected"] = len(
        {
            e["event_id"]
            for e in observed.complaint_events
            if e["event_type"] == CORRECTION and e["complaint_id"] in replays
        }
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
    problems += [
        f"KPI {name}: returned by GET /v1/kpis, neither reconciled nor listed as unreconciled"
        for name in observed.kpis
        if name not in figures and name not in UNRECONCILED
    ]
    result.check("KPI figures", len(figures), problems)
    expected_open = ledger.open_complaints(replays)
    result.check(
        "open complaints",
        sum(expected_open.values()),
        [
            f"open complaints {key[0]} stage {key[1]}: {observed.open_complaints.get(key, 0)}, "
            f"expected {expected_open.get(key, 0)}"
            for key in sorted({*expected_open, *observed.open_complaints})
            if observed.open_complaints.get(key, 0) != expected_open.get(key, 0)
        ],
    )

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


def _check_breaches(
    breaches: Mapping[str, Breaches], events: list[dict[str, Any]]
) -> tuple[int, list[str]]:
    """Each deadline nets exactly the ledger's breaches: one breach (corrected or not)
    at most, a correction only of a breach, and breaches less corrections as expected."""
    keys = ("complaint_id", "payload.stage", "payload.deadline")
    fired = distinct_ids((e for e in events if e["event_type"] == BREACH), *keys)
    corrected = distinct_ids((e for e in events if e["event_type"] == CORRECTION), *keys)
    problems = []
    for complaint_id, expected in breaches.items():
        due = {_fired_key(complaint_id, t) for t in expected.judged | expected.breached}
        for key in sorted(due):
            got, undone = len(fired.get(key, ())), len(corrected.get(key, ()))
            wanted = int(f"{key[1]}:{key[2]}" in expected.breached)
            if got > 1 or undone > got or got - undone != wanted:
                problems.append(
                    f"{complaint_id} {key[1]}:{key[2]}: breached {got} times, corrected "
                    f"{undone}, expected net {wanted}"
                )
        unexpected = {k for k in (*fired, *corrected) if k[0] == complaint_id} - due
        problems += [f"{complaint_id}: breach of {key[1:]} not due" for key in sorted(unexpected)]
    return sum(len(b.breached) for b in breaches.values()), problems


def _fired_key(complaint_id: str, timer_id: str) -> tuple[Any, ...]:
    """The key of a breach event for a deadline's timer id (`<stage>:<kind>`)."""
    stage, kind = timer_id.split(":")
    return (complaint_id, int(stage), kind)


def _ours(ledger: Ledger, replays: Mapping[str, ComplaintReplay], case: tuple[Any, ...]) -> bool:
    case_type, case_id = case
    if case_type == "complaint":
        return case_id in replays
    return any(body["contact_id"] == case_id for body in ledger.contacts())
