"""What a district council's customer service looks like, as a plan of records to send.

Pure and deterministic for a seed: the simulator (`civicpulse simulate`)
sends a plan through the interfaces other council systems use, and tests
check its shape without any broker.

The shape follows the seeds' minutes: phone is half of all contacts and
planning is about half of all calls, transferred twice before anyone who can
help answers; most enquiries are resolved at first contact; service requests
are resolved days later; some callers hang up in the queue; complaints go
through stage 1, some on to stage 2 and the Ombudsman, a few late; mystery
shoppers sample every channel. The `snow` scenario adds a refuse-collection
surge like the January with 359 stage 1 complaints.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from services.complaints.domain import complaint_id_for_contact
from services.complaints.working_days import WorkingDayCalendar

LONDON = ZoneInfo("Europe/London")
SOURCE = "simulator"
CASE_MANAGER = "case-manager"

CHANNEL_SHARE = {
    "phone": 0.50,
    "web": 0.24,
    "email": 0.11,
    "face_to_face": 0.10,
    "letter": 0.03,
    "social": 0.02,
}
# Service areas of contacts that are not planning calls.
AREA_SHARE = {
    "waste": 0.22,
    "council_tax": 0.18,
    "benefits": 0.12,
    "housing": 0.10,
    "planning": 0.08,
    "highways": 0.08,
    "environmental_health": 0.05,
    "licensing": 0.04,
    "homelessness": 0.03,
    "enforcement": 0.03,
    "land_charges": 0.02,
    "adult_social_care": 0.02,
    "childrens_social_care": 0.01,
    "other": 0.02,
}
KIND_SHARE = {
    "enquiry": 0.55,
    "service_request": 0.30,
    "feedback": 0.06,
    "complaint": 0.05,
    "compliment": 0.04,
}
# Busy hours of a weekday (local time), with relative weights.
HOUR_WEIGHTS = {8: 3, 9: 9, 10: 10, 11: 9, 12: 6, 13: 7, 14: 9, 15: 8, 16: 6, 17: 3}
MYSTERY_STANDARDS = ("greeting", "accuracy", "courtesy", "resolution", "follow_up")


class Route(StrEnum):
    RAW_TOPIC = "raw_topic"  # intake's Kafka topic
    HTTP = "http"  # intake's POST /v1/contacts
    CASE_ACTION = "case_action"  # the complaints service's actions topic


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to send, with the simulated time it happened."""

    at: datetime
    route: Route
    key: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Surge:
    """Extra complaints and contacts for one service area over some days."""

    service_area: str
    first_day: int  # days after the start; negative counts back from the end
    days: int
    complaints_per_day: int
    contact_multiplier: float


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    surge: Surge | None = None


SCENARIOS = {
    "normal": Scenario("normal", "an ordinary month: daily and weekly rhythm, no surge"),
    "snow": Scenario(
        "snow",
        "snow stops the bin rounds: a week and a half of refuse complaints "
        "(about 360 at stage 1) and three times the usual waste contacts",
        # The last ten days: a run ending today shows the surge live (SurgeDetected, alert).
        Surge("waste", first_day=-10, days=10, complaints_per_day=36, contact_multiplier=3.0),
    ),
}


@dataclass
class Plan:
    items: list[Outgoing] = field(default_factory=list)

    def add(self, at: datetime, route: Route, key: str, body: dict[str, Any]) -> None:
        self.items.append(Outgoing(at, route, key, body))


def _weighted(rng: random.Random, shares: dict[str, float]) -> str:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat()


@dataclass
class CouncilSimulation:
    """Builds the plan for `days` days from `start` for a council of `households`."""

    scenario: Scenario
    start: date
    days: int
    households: int = 50_000
    http_share: float = 0.2
    seed: int = 1
    not_after: datetime | None = None  # nothing later than this (default: now)
    calendar: WorkingDayCalendar = field(default_factory=WorkingDayCalendar)
    _rng: random.Random = field(init=False)
    _sequence: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - simulation, not security
        if self.not_after is None:
            self.not_after = datetime.now(UTC)

    def plan(self) -> list[Outgoing]:
        """Every record, contacts in time order; a case's later records right after it.

        A complaint's whole lifecycle is sent straight after the contact that
        opened it, each action carrying its own simulated time: the services
        judge deadlines on those times, so a month can be replayed in minutes.
        """
        plan = Plan()
        for offset in range(self.days):
            day = self.start + timedelta(days=offset)
            for at in self._contact_times(day, offset):
                self._contact(plan, at, self._active_surge(offset))
            surge = self._active_surge(offset)
            for at in self._surge_complaint_times(day, offset):
                assert surge is not None  # surge complaints only fall on surge days
                self._contact(plan, at, None, kind="complaint", area=surge.service_area)
            if day.weekday() in (1, 3):  # mystery shoppers visit twice a week
                self._mystery_shop(plan, self._moment(day))
        assert self.not_after is not None
        return [item for item in plan.items if item.at <= self.not_after]

    # -- when -----------------------------------------------------------------------

    def _daily_contacts(self, day: date, offset: int) -> int:
        per_weekday = self.households / 250
        weekday_factor = {5: 0.2, 6: 0.1}.get(day.weekday(), 1.0)
        if not self.calendar.is_working_day(day) and day.weekday() < 5:
            weekday_factor = 0.1  # a bank holiday: only the web is open
        return round(per_weekday * weekday_factor * self._rng.uniform(0.85, 1.15))

    def _moment(self, day: date) -> datetime:
        hour = self._rng.choices(list(HOUR_WEIGHTS), weights=list(HOUR_WEIGHTS.values()))[0]
        local = datetime.combine(day, time(hour, self._rng.randrange(60)), LONDON)
        return local.astimezone(UTC) + timedelta(seconds=self._rng.randrange(60))

    def _contact_times(self, day: date, offset: int) -> list[datetime]:
        count = self._daily_contacts(day, offset)
        surge = self._active_surge(offset)
        if surge is not None:
            count = round(
                count * (1 + (surge.contact_multiplier - 1) * AREA_SHARE[surge.service_area])
            )
        return sorted(self._moment(day) for _ in range(count))

    def _surge_complaint_times(self, day: date, offset: int) -> list[datetime]:
        surge = self._active_surge(offset)
        if surge is None:
            return []
        count = round(surge.complaints_per_day * self._rng.uniform(0.8, 1.2))
        return sorted(self._moment(day) for _ in range(count))

    def _active_surge(self, offset: int) -> Surge | None:
        """The scenario's surge if day `offset` falls within it."""
        surge = self.scenario.surge
        if surge is None:
            return None
        first = surge.first_day if surge.first_day >= 0 else self.days + surge.first_day
        return surge if first <= offset < first + surge.days else None

    # -- contacts -------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        self._sequence += 1
        return f"SIM-{self.seed}-{prefix}{self._sequence:07d}"

    def _route(self) -> Route:
        return Route.HTTP if self._rng.random() < self.http_share else Route.RAW_TOPIC

    def _contact(
        self,
        plan: Plan,
        at: datetime,
        surge: Surge | None,
        *,
        kind: str | None = None,
        area: str | None = None,
    ) -> None:
        rng = self._rng
        contact_id = self._next_id("C")
        channel = _weighted(rng, CHANNEL_SHARE)
        is_call = channel == "phone"
        area = area or self._area(channel, surge)
        kind = kind or _weighted(rng, KIND_SHARE)
        base = {"contact_id": contact_id, "source": SOURCE, "occurred_at": _iso(at)}
        if is_call and kind != "complaint" and rng.random() < 0.07:
            plan.add(
                at,
                self._route(),
                contact_id,
                {
                    **base,
                    "record_type": "call_abandoned",
                    "idempotency_key": f"{contact_id}:abandoned",
                    "service_area": area,
                    "wait_seconds": round(rng.uniform(20, 420), 1),
                },
            )
            return
        # Planning calls go through reception and are passed on twice (seed 000).
        transfers = 2 if is_call and area == "planning" and rng.random() < 0.8 else 0
        if is_call and not transfers and rng.random() < 0.12:
            transfers = 1
        resolved_first_time = (
            kind in ("enquiry", "compliment", "feedback") and not transfers and rng.random() < 0.72
        )
        customer_ref = f"CUST-{rng.randint(1, self.households):06d}"
        route = self._route()
        plan.add(
            at,
            route,
            contact_id,
            {
                **base,
                "record_type": "contact_received",
                "idempotency_key": f"{contact_id}:received",
                "channel": channel,
                "service_area": area,
                "kind": kind,
                "customer_ref": customer_ref,
                "answered_by_team": "reception" if transfers else area,
                "transfers": transfers,
                "resolved_at_first_contact": resolved_first_time,
                **({"wait_seconds": round(rng.expovariate(1 / 45), 1)} if is_call else {}),
            },
        )
        for hop in range(transfers):
            plan.add(
                at + timedelta(minutes=2 * (hop + 1)),
                route,
                contact_id,
                {
                    **base,
                    "occurred_at": _iso(at + timedelta(minutes=2 * (hop + 1))),
                    "record_type": "contact_transferred",
                    "idempotency_key": f"{contact_id}:transferred:{hop}",
                    "from_team": "reception" if hop == 0 else "reception_supervisor",
                    "to_team": area if hop == transfers - 1 else "reception_supervisor",
                    "service_area": area,
                },
            )
        if kind in ("enquiry", "service_request") and not resolved_first_time:
            later = at + timedelta(days=rng.choice((0, 1, 2, 3, 5, 8)), hours=rng.randint(1, 6))
            plan.add(
                later,
                route,
                contact_id,
                {
                    **base,
                    "occurred_at": _iso(later),
                    "record_type": "contact_resolved",
                    "idempotency_key": f"{contact_id}:resolved",
                    "channel": channel,
                    "service_area": area,
                    "kind": kind,
                    "customer_ref": customer_ref,
                },
            )
        if kind == "complaint":
            for action_at, body in self._complaint_lifecycle(contact_id, at):
                plan.add(action_at, Route.CASE_ACTION, body["complaint_id"], body)

    def _area(self, channel: str, surge: Surge | None) -> str:
        if channel == "phone" and self._rng.random() < 0.45:
            return "planning"  # with the 8% below, about half of all calls (seed 000)
        if surge and self._rng.random() < surge.contact_multiplier / 10:
            return surge.service_area
        return _weighted(self._rng, AREA_SHARE)

    def _mystery_shop(self, plan: Plan, at: datetime) -> None:
        contact_id = self._next_id("M")
        plan.add(
            at,
            Route.RAW_TOPIC,
            contact_id,
            {
                "contact_id": contact_id,
                "source": SOURCE,
                "occurred_at": _iso(at),
                "record_type": "mystery_shop_assessed",
                "idempotency_key": f"{contact_id}:assessed",
                "channel": _weighted(self._rng, CHANNEL_SHARE),
                "service_area": _weighted(self._rng, AREA_SHARE),
                "scores": {
                    s: self._rng.choice((60, 70, 80, 80, 90, 100)) for s in MYSTERY_STANDARDS
                },
            },
        )

    # -- complaints -----------------------------------------------------------------

    def _working_days_after(self, at: datetime, days: int) -> datetime:
        local = at.astimezone(LONDON)
        day = self.calendar.add_working_days(local.date(), days)
        moment = datetime.combine(
            day, time(self._rng.randint(9, 16), self._rng.randrange(60)), LONDON
        )
        return moment.astimezone(UTC)

    def _complaint_lifecycle(
        self, contact_id: str, opened_at: datetime
    ) -> Iterator[tuple[datetime, dict[str, Any]]]:
        """Case actions for the complaint a contact opened, in the order they happen."""
        rng = self._rng
        complaint_id = complaint_id_for_contact(contact_id)
        number = 0

        def action(at: datetime, name: str, **fields: Any) -> tuple[datetime, dict[str, Any]]:
            nonlocal number
            number += 1
            return at, {
                "action": name,
                "action_id": f"{complaint_id}:{number}",
                "complaint_id": complaint_id,
                "source": CASE_MANAGER,
                "occurred_at": _iso(at),
                **fields,
            }

        if rng.random() < 0.03:
            yield action(
                self._working_days_after(opened_at, 2), "withdraw", reason="resolved informally"
            )
            return
        for stage in (1, 2):
            # About one in ten acknowledgements and responses is late.
            ack_days = rng.randint(1, 4) if rng.random() > 0.1 else rng.randint(6, 8)
            acknowledged = self._working_days_after(opened_at, ack_days)
            yield action(acknowledged, "acknowledge")
            limit = 10 if stage == 1 else 20
            respond_days = (
                rng.randint(3, limit - 1) if rng.random() > 0.1 else limit + rng.randint(1, 4)
            )
            responded = self._working_days_after(acknowledged, respond_days)
            outcome = rng.choice(("upheld", "partly_upheld", "not_upheld", "not_upheld"))
            learning = (
                [{"description": "brief the team on the missed collection", "owner_team": "waste"}]
                if outcome != "not_upheld"
                else []
            )
            yield action(
                responded,
                "respond",
                outcome=outcome,
                responder=f"officer-{stage}-{rng.randint(1, 9)}",
                learning_actions=learning,
            )
            if stage == 1 and rng.random() < 0.18:
                opened_at = self._working_days_after(responded, rng.randint(1, 15))
                yield action(opened_at, "request_escalation")
                continue
            if stage == 2 and rng.random() < 0.12:
                yield action(
                    self._working_days_after(responded, rng.randint(5, 25)), "refer_to_ombudsman"
                )
            if stage == 1:
                # Not escalated: the complaints service closes it when the window lapses.
                return
            yield action(self._working_days_after(responded, 1), "close")
            return
