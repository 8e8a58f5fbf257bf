"""An independent ledger of what the simulator sent, and what each record must cause.

The fault tests write down every record as it is handed to the system (the
five contact record types, every case action, every survey answer, every bad
record) and compute the expected effects from those records alone: which
canonical events exist, the state of each complaint, which deadlines must be
breached, which cases get a survey, what `GET /v1/kpis` must say. Nothing the
system published is consulted to build these expectations; `reconcile` then
compares them with what the system did.

Complaints are replayed through the complaints domain's pure rules (no I/O),
fed from the plan, then the timers due by `now` fire (breaches of deadlines
with no action, the lapse that closes a stage 1 case never escalated): a
fault test asks whether faults lose or double effects, and the domain's rules
themselves are proven by their own unit tests. Timeliness is judged by dates,
so the replay's order (the plan's) gives the one right answer for any order
of arrival; the system may get there by a breach and its correction.
"""

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from civicpulse.simulation.plan import Outgoing, Route
from services.complaints.actions import ACTION_ADAPTER, OpenComplaint
from services.complaints.domain import (
    Complaint,
    Context,
    Decision,
    breach,
    complaint_id_for_contact,
    decide,
    lapse,
)
from services.complaints.procedures import Policy
from services.complaints.working_days import WorkingDayCalendar, end_of_local_day
from shared.events.vocabulary import Channel, DeadlineKind

LONDON = ZoneInfo("Europe/London")
EVENT_TYPES = {
    "contact_received": "ContactReceived",
    "contact_transferred": "ContactTransferred",
    "contact_resolved": "ContactResolved",
    "call_abandoned": "CallAbandoned",
    "mystery_shop_assessed": "MysteryShopAssessed",
}
SURVEYED_KINDS = {"enquiry", "service_request"}
FCR_KINDS = SURVEYED_KINDS  # the kinds first contact resolution counts
BREACH = "ComplaintDeadlineBreached"
CORRECTION = "ComplaintDeadlineBreachCorrected"
FINAL_CORPORATE_STAGE = 2
CODE_STAGES = (1, 2)  # the stages the Code's timeliness KPIs count
TIMELINESS = {DeadlineKind.ACKNOWLEDGE: "ack", DeadlineKind.RESPOND: "response"}


@dataclass(frozen=True, slots=True)
class BadRecord:
    topic: str
    value: bytes
    reason: str  # a word the dead letter's reason or error type must contain


@dataclass(frozen=True, slots=True)
class Answer:
    request_id: str
    overall: int
    ease: int


@dataclass
class ComplaintReplay:
    """One complaint as the plan's records, replayed in order, make it."""

    complaint: Complaint | None = None
    events: Counter[str] = field(default_factory=Counter)
    refused: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    occurrences: list[tuple[str, datetime, dict[str, Any]]] = field(default_factory=list)
    # Requests dated inside a window whose end had passed by `now`: the lapse timer may
    # have closed the case before the request arrived and reopened it (issue 11 item 1),
    # one ComplaintClosed more, undone by the request. By design, not by arrival luck.
    lapses_reopened: int = 0


@dataclass(frozen=True, slots=True)
class Breaches:
    """The deadlines of one complaint that must end breached, net of corrections.

    Judged by dates (issue 11): breached when its action's local date is after
    the due date, or it had no action and its day has ended. A timer firing
    before an on-time action is corrected (net none); a late action arriving
    first emits the breach itself. Each deadline nets one breach or none.
    """

    breached: frozenset[str]  # timer ids (`<stage>:<kind>`) that net one breach
    judged: frozenset[str]  # every deadline of the complaint with a known or due outcome


@dataclass(frozen=True, slots=True)
class Figure:
    numerator: float
    denominator: float | None

    def matches(self, numerator: float | None, denominator: float | None) -> bool:
        def same(a: float | None, b: float | None) -> bool:
            return (a or 0.0) == (b or 0.0) or abs((a or 0.0) - (b or 0.0)) < 1e-6

        return same(self.numerator, numerator) and same(self.denominator, denominator)


@dataclass
class Ledger:
    """Everything sent, with when (monotonic seconds) it was handed over."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    calendar: WorkingDayCalendar = field(default_factory=WorkingDayCalendar)
    policy: Policy = field(default_factory=Policy)
    survey_expiry: timedelta = timedelta(days=14)
    service_level_seconds: float = 20.0
    fcr_window: timedelta = timedelta(days=7)
    records: list[Outgoing] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)
    answered_at: list[float] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)

    # -- writing down ---------------------------------------------------------------

    def sent(self, item: Outgoing) -> None:
        self.records.append(item)
        self.sent_at.append(time.monotonic())

    def answered(self, answer: Answer) -> None:
        self.answers[answer.request_id] = answer
        self.answered_at.append(time.monotonic())

    def bad_record(self, record: BadRecord) -> None:
        self.bad.append(record)
        self.sent_at.append(time.monotonic())

    def sent_between(self, start: float, end: float) -> int:
        """Records (of every kind) handed over while a fault lasted."""
        return sum(start <= t <= end for t in (*self.sent_at, *self.answered_at))

    def counts(self) -> Counter[str]:
        kinds: Counter[str] = Counter()
        for item in self.records:
            kinds[item.body.get("record_type") or f"action:{item.body['action']}"] += 1
        kinds["survey_answer"] = len(self.answers)
        kinds["bad_record"] = len(self.bad)
        return kinds

    # -- expectations ---------------------------------------------------------------

    def contacts(self) -> list[dict[str, Any]]:
        return [item.body for item in self.records if item.route is not Route.CASE_ACTION]

    def contact_events(self) -> Counter[tuple[str, str]]:
        """(event type, contact id) -> how many distinct canonical events."""
        return Counter(
            (EVENT_TYPES[body["record_type"]], body["contact_id"]) for body in self.contacts()
        )

    def complaints(self) -> dict[str, ComplaintReplay]:
        """Every complaint: opened by its contact, then each case action sent, in order."""
        replays: dict[str, ComplaintReplay] = {}
        context = Context(self.calendar, self.policy, self.now)
        for item in self.records:
            body = item.body
            if body.get("record_type") == "contact_received" and body["kind"] == "complaint":
                action: Any = OpenComplaint(
                    action="open",
                    action_id=f"contact:{body['contact_id']}",
                    complaint_id=complaint_id_for_contact(body["contact_id"]),
                    source=body.get("source", "simulator"),
                    occurred_at=datetime.fromisoformat(body["occurred_at"]),
                    service_area=body["service_area"],
                    channel=Channel(body["channel"]),
                    customer_ref=body.get("customer_ref"),
                    contact_id=body["contact_id"],
                )
            elif item.route is Route.CASE_ACTION:
                action = ACTION_ADAPTER.validate_python(body)
            else:
                continue
            replay = replays.setdefault(action.complaint_id, ComplaintReplay())
            replay.lapses_reopened += self._lapse_may_precede(replay.complaint, body)
            outcome = decide(replay.complaint, action, context)
            if isinstance(outcome, Decision):
                replay.complaint = outcome.complaint
                for event in outcome.events:
                    replay.events[event.event_type] += 1
                    payload = event.model_dump(mode="json")["payload"]
                    replay.occurrences.append((event.event_type, event.occurred_at, payload))
            else:
                replay.refused.append((body, outcome.reason.value))
        for replay in replays.values():
            self._fire_timers(replay)
        return replays

    def _lapse_may_precede(self, complaint: Complaint | None, body: Mapping[str, Any]) -> bool:
        window = complaint.escalation_window if complaint is not None else None
        return (
            body.get("action") == "request_escalation"
            and window is not None
            and window.open
            and end_of_local_day(window.ends) <= self.now
        )

    def _fire_timers(self, replay: ComplaintReplay) -> None:
        """The timers due by `now`: a deadline's day ended with no action (its breach),
        a window ended with no request (the lapse that closes the complaint)."""
        assert replay.complaint is not None
        fired: list[Decision] = []
        for deadline in replay.complaint.deadlines:
            decision = breach(
                replay.complaint, deadline.stage, deadline.kind, now=self.now, recorded_at=self.now
            )
            if decision is not None:
                replay.complaint = decision.complaint
                fired.append(decision)
        if (closed := lapse(replay.complaint, now=self.now, recorded_at=self.now)) is not None:
            replay.complaint = closed.complaint
            fired.append(closed)
        for decision in fired:
            for event in decision.events:
                replay.events[event.event_type] += 1
                payload = event.model_dump(mode="json")["payload"]
                replay.occurrences.append((event.event_type, event.occurred_at, payload))

    def breaches(self, replays: Mapping[str, ComplaintReplay]) -> dict[str, Breaches]:
        """Per complaint, the deadlines that net one breach (from the replay by dates)."""
        out = {}
        for complaint_id, replay in replays.items():
            assert replay.complaint is not None
            judged = {
                d.timer_id
                for d in replay.complaint.deadlines
                if d.met_on is not None or d.breached or end_of_local_day(d.due_date) <= self.now
            }
            breached = {
                d.timer_id
                for d in replay.complaint.deadlines
                if d.breached and not d.breach_corrected
            }
            out[complaint_id] = Breaches(frozenset(breached), frozenset(judged | breached))
        return out

    def survey_cases(self, replays: Mapping[str, ComplaintReplay]) -> set[tuple[str, str]]:
        """(case type, case id) of every case that must get exactly one survey request.

        Feedback's rules with every customer reachable, none opted out and no
        quiet period (the fault tests configure it so): resolved enquiries and
        service requests, and corporate complaints at their end, unless stale.
        """
        cases = set()
        for body in self.contacts():
            first_time = body["record_type"] == "contact_received" and body.get(
                "resolved_at_first_contact"
            )
            resolved = first_time or body["record_type"] == "contact_resolved"
            if resolved and body.get("kind") in SURVEYED_KINDS and self._fresh(body):
                cases.add(("contact", body["contact_id"]))
        for complaint_id, replay in replays.items():
            assert replay.complaint is not None
            if replay.complaint.statutory or replay.events["ComplaintWithdrawn"]:
                continue
            ends = [
                at
                for event_type, at, payload in replay.occurrences
                if event_type == "ComplaintClosed"
                or (
                    event_type == "ComplaintResponded" and payload["stage"] >= FINAL_CORPORATE_STAGE
                )
            ]
            if ends and ends[0] + self.survey_expiry >= self.now:
                cases.add(("complaint", complaint_id))
        return cases

    def _fresh(self, body: Mapping[str, Any]) -> bool:
        return datetime.fromisoformat(body["occurred_at"]) + self.survey_expiry >= self.now

    def first_day(self) -> date:
        days = [datetime.fromisoformat(item.body["occurred_at"]) for item in self.records]
        return min(days).astimezone(LONDON).date()

    def kpis(self, replays: Mapping[str, ComplaintReplay], surveys: int) -> dict[str, Figure]:
        """KPI numerators and denominators over every day sent, by the definitions of
        services/metrics/domain/kpis.py and docs/metrics.md, from the plan alone."""
        c: Counter[str] = Counter()
        transferred = Counter(
            body["contact_id"]
            for body in self.contacts()
            if body["record_type"] == "contact_transferred"
        )
        for body in self.contacts():
            kind = body["record_type"]
            if kind == "contact_received":
                c["contacts_received"] += 1
                c["compliments_received"] += body["kind"] == "compliment"
                if body["channel"] == "phone":
                    c["calls_answered"] += 1
                    # Transfers at receipt plus each ContactTransferred (docs/metrics.md).
                    transfers = body.get("transfers", 0) + transferred[body["contact_id"]]
                    c["call_transfers"] += transfers
                    c["calls_transferred"] += transfers > 0
                    if body.get("wait_seconds") is not None:
                        c["calls_waited"] += 1
                        c["wait_seconds"] += body["wait_seconds"]
                        c["within_level"] += body["wait_seconds"] <= self.service_level_seconds
            elif kind == "call_abandoned":
                c["calls_abandoned"] += 1
            elif kind == "mystery_shop_assessed":
                c["mystery_shops"] += 1
                c["mystery_total"] += sum(body["scores"].values()) / len(body["scores"])
        fcr = self.first_contact_resolution(transferred)
        for replay in replays.values():
            assert replay.complaint is not None
            scope = "statutory" if replay.complaint.statutory else "corporate"
            for event_type, _, payload in replay.occurrences:
                if event_type == "ComplaintOpened":
                    c[f"{scope}_s1"] += 1
                elif event_type == "ComplaintEscalationRequested":
                    # Counted when the customer asks (docs/metrics.md), refused or not.
                    c[f"{scope}_s{payload['from_stage'] + 1}"] += 1
                elif event_type == "ComplaintResponded":
                    c[f"{scope}_responded"] += 1
                    c[f"{scope}_responded_{payload['outcome']}"] += 1
                elif event_type == "ComplaintReferredToOmbudsman":
                    c[f"{scope}_referrals"] += 1
            if scope == "corporate":
                c.update(self._timeliness(replay.complaint))
        answers = list(self.answers.values())
        responded = len(answers)
        return {
            "first_contact_resolution": fcr,
            "answered_first_time_by_right_team": Figure(
                c["calls_answered"] - c["calls_transferred"], c["calls_answered"]
            ),
            "transfer_rate": Figure(c["calls_transferred"], c["calls_answered"]),
            "average_transfers_per_call": Figure(c["call_transfers"], c["calls_answered"]),
            "contacts_received": Figure(c["contacts_received"], None),
            "compliments_received": Figure(c["compliments_received"], None),
            "abandoned_call_rate": Figure(
                c["calls_abandoned"], c["calls_answered"] + c["calls_abandoned"]
            ),
            "average_speed_of_answer": Figure(c["wait_seconds"], c["calls_waited"]),
            "service_level": Figure(c["within_level"], c["calls_answered"] + c["calls_abandoned"]),
            "mystery_shop_score": Figure(c["mystery_total"], c["mystery_shops"]),
            "complaints_received_stage_1": Figure(c["corporate_s1"], None),
            "complaints_received_stage_2": Figure(c["corporate_s2"], None),
            "complaints_acknowledged_within_target": Figure(c["ack_on_time"], c["ack_due"]),
            "complaints_responded_within_target": Figure(c["response_on_time"], c["response_due"]),
            "complaint_escalation_rate": Figure(c["corporate_s2"], c["corporate_s1"]),
            "statutory_complaints_received": Figure(c["statutory_s1"], None),
            "complaints_upheld": Figure(c["corporate_responded_upheld"], c["corporate_responded"]),
            "complaints_partly_upheld": Figure(
                c["corporate_responded_partly_upheld"], c["corporate_responded"]
            ),
            "complaints_not_upheld": Figure(
                c["corporate_responded_not_upheld"], c["corporate_responded"]
            ),
            "complaint_deadline_breaches": Figure(c["breached"], None),
            "ombudsman_referrals": Figure(c["corporate_referrals"], None),
            "statutory_ombudsman_referrals": Figure(c["statutory_referrals"], None),
            "csat": Figure(sum(a.overall >= 4 for a in answers), responded),
            "average_ease": Figure(sum(a.ease for a in answers), responded),
            "survey_response_rate": Figure(responded, surveys),
        }

    @staticmethod
    def open_complaints(replays: Mapping[str, ComplaintReplay]) -> Counter[tuple[str, int]]:
        """Complaints open now (neither closed nor withdrawn), by scope and stage."""
        counts: Counter[tuple[str, int]] = Counter()
        for replay in replays.values():
            complaint = replay.complaint
            assert complaint is not None
            if complaint.status.value not in ("closed", "withdrawn"):
                scope = "statutory" if complaint.statutory else "corporate"
                counts[(scope, complaint.stage)] += 1
        return counts

    def first_contact_resolution(self, transferred: Mapping[str, int]) -> Figure:
        """Enquiries and service requests resolved at first contact with no transfer (at
        receipt or later), and no other contact from the same customer about the same area
        within the window after it; over enquiries and service requests received.

        The figure may be provisional (re-contacts still to come can lower it): the API
        reports the numbers so far, which are what this counts.
        """
        received = [b for b in self.contacts() if b["record_type"] == "contact_received"]
        times: dict[tuple[str, str], list[datetime]] = {}
        for body in received:
            if body.get("customer_ref") is not None:
                key = (body["customer_ref"], body["service_area"])
                times.setdefault(key, []).append(datetime.fromisoformat(body["occurred_at"]))
        eligible = first_time = 0
        for body in received:
            if body["kind"] not in FCR_KINDS:
                continue
            eligible += 1
            if not body.get("resolved_at_first_contact") or body.get("transfers", 0):
                continue
            if transferred.get(body["contact_id"]):
                continue  # a later transfer loses it
            at = datetime.fromisoformat(body["occurred_at"])
            others = times.get((body.get("customer_ref") or "", body["service_area"]), [])
            if any(at < other <= at + self.fcr_window for other in others):
                continue  # re-contacted within the window
            first_time += 1
        return Figure(first_time, eligible)

    @staticmethod
    def _timeliness(complaint: Complaint) -> Counter[str]:
        """A corporate complaint's deadlines with a known outcome (met, or breached), and
        those met on or before their due date, at the Code's stages."""
        c: Counter[str] = Counter()
        for deadline in complaint.deadlines:
            c["breached"] += deadline.breached and not deadline.breach_corrected
            name = TIMELINESS.get(deadline.kind)
            if deadline.stage not in CODE_STAGES or name is None:
                continue
            if deadline.met_on is None and not deadline.breached:
                continue  # no outcome yet (or cancelled before it was due)
            c[f"{name}_due"] += 1
            c[f"{name}_on_time"] += bool(deadline.met_in_time)
        return c


def distinct_ids(
    events: Iterable[Mapping[str, Any]], *key_fields: str
) -> dict[tuple[Any, ...], set[str]]:
    """Distinct event ids per key (e.g. event type and contact id): a record published
    twice with one id is one event; two ids for one key are a double effect."""
    ids: dict[tuple[Any, ...], set[str]] = {}
    for event in events:
        key = tuple(_field(event, name) for name in key_fields)
        ids.setdefault(key, set()).add(str(event["event_id"]))
    return ids


def _field(event: Mapping[str, Any], name: str) -> Any:
    value: Any = event
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value
