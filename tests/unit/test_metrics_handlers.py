"""Metrics' handlers, each test body run on the in-memory fake store and on PostgreSQL.

The `postgres` runs are marked integration (the unit tier deselects them with
`-m "not integration"`); they use a database of their own, made beside the
session's, so generation switches here never touch the other tests' state.
Expected counts come from the events each test sends, never from what was stored.
"""

import inspect
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from civicpulse.infra import scratch_database
from services.metrics.applier import BatchApplier, ConsumerMetrics, LiveConsumer
from services.metrics.domain import Rules, SurgeRule
from services.metrics.handlers import HANDLERS
from services.metrics.periods import DateRange
from services.metrics.store import MIGRATIONS, MetricsStore, NotInTransactionError
from shared.events import Event
from shared.events.catalogue import EVENTS_BY_TOPIC, parse_event
from shared.events.complaint_versions import OLD_COMPLAINT_EVENTS
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintClosed,
    ComplaintDeadlineBreached,
    ComplaintEscalated,
    ComplaintEscalationRequested,
    ComplaintOpened,
    ComplaintPanelStepRecorded,
    ComplaintReferredToOmbudsman,
    ComplaintResponded,
    ComplaintWithdrawn,
)
from shared.events.feedback import (
    CustomerOptedOut,
    SatisfactionResponded,
    SatisfactionRespondedV1,
)
from shared.events.metrics import KpiTargetMissed, SurgeDetected
from shared.events.vocabulary import (
    CaseType,
    Channel,
    ComplaintOutcome,
    ComplaintProcedure,
    DeadlineKind,
)
from shared.postgres import create_pool, migrate
from shared.topics import CANONICAL_TOPICS, CONTACTS
from tests.support.fake_metrics_store import FakeMetricsStore
from tests.support.metrics import Events, utc_at

DAY = date(2024, 6, 3)
NOW = datetime(2024, 7, 1, tzinfo=UTC)
RULES = Rules()
APPLIER = BatchApplier(rules=RULES, clock=lambda: NOW, publish_surges=False)
METRICS_TABLES = (
    "metrics_aggregates",
    "metrics_monthly",
    "metrics_rollups",
    "metrics_contact_facts",
    "metrics_complaint_facts",
    "metrics_complaint_outcomes",
    "metrics_surges",
    "metrics_topic_progress",
    "metrics_complaint_deadlines",
    "processed_events",
    "outbox",
)


@dataclass
class Backend:
    store: MetricsStore
    pool: asyncpg.Pool | None = None  # PostgreSQL only: to read the outbox back

    async def published(self) -> list[Event]:
        """What the batches left in the outbox, in order."""
        if isinstance(self.store, FakeMetricsStore):
            return list(self.store.state.outbox)
        assert self.pool is not None
        rows = await self.pool.fetch(
            "SELECT value FROM outbox WHERE service = 'metrics' ORDER BY id"
        )
        return [parse_event(row["value"]) for row in rows]


@pytest.fixture(scope="module")
async def metrics_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    name = f"civicpulse_metrics_store_{uuid.uuid4().hex[:8]}"
    async with scratch_database(database_url, name) as url:
        pool = await create_pool(url)
        await migrate(pool, "metrics", MIGRATIONS)
        yield pool
        await pool.close()


@pytest.fixture
async def postgres_backend(metrics_pool: asyncpg.Pool) -> Backend:
    """The freshly migrated state: generation 1 live, nothing counted."""
    await metrics_pool.execute(f"TRUNCATE {', '.join(METRICS_TABLES)}")
    await metrics_pool.execute("UPDATE metrics_current SET generation = 1")
    await metrics_pool.execute("DELETE FROM metrics_generations WHERE generation <> 1")
    await metrics_pool.execute("UPDATE metrics_generations SET state = 'live'")
    return Backend(MetricsStore(metrics_pool), metrics_pool)


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "fake":
        return Backend(FakeMetricsStore())
    postgres: Backend = request.getfixturevalue("postgres_backend")
    return postgres


@pytest.fixture
def store(backend: Backend) -> MetricsStore:
    return backend.store


async def apply(
    store: MetricsStore,
    *batches: Sequence[Event],
    applier: BatchApplier = APPLIER,
    generation: int = 1,
) -> int:
    applied = 0
    for batch in batches:
        async with store.transaction() as tx:
            applied += await applier.apply(tx, generation, batch)
    return applied


async def day_totals(store: MetricsStore, day: date = DAY, generation: int = 1) -> dict[str, float]:
    return await store.totals(generation, DateRange(day, day))


def contacts(events: Events) -> tuple[Event, Event, Event, Event]:
    first = events.received(
        "first", utc_at(DAY, 9), channel=Channel.WEB, area="waste", customer="x", resolved=True
    )
    again = events.received(
        "again", utc_at(DAY, 16), channel=Channel.PHONE, area="waste", customer="x"
    )
    other_area = events.received(
        "other", utc_at(DAY, 10), channel=Channel.WEB, area="planning", customer="y", resolved=True
    )
    later_elsewhere = events.received(
        "later", utc_at(DAY, 11), channel=Channel.WEB, area="housing", customer="y"
    )
    return first, again, other_area, later_elsewhere


# -- contacts ---------------------------------------------------------------------------


async def test_a_re_contact_consumed_before_the_first_contact_still_loses_its_fcr(
    store: MetricsStore,
) -> None:
    """DOMAIN.md, FCR: a re-contact about the same service area within the window loses it."""
    first, again, other, elsewhere = contacts(Events())
    in_order, reversed_order = 11, 12

    await apply(store, [first, other], [again, elsewhere], generation=in_order)
    await apply(store, [elsewhere, again], [other], [first], generation=reversed_order)

    expected = {"fcr_first_time": 2, "fcr_lost": 1, "fcr_eligible": 4}
    assert (await day_totals(store, generation=in_order)).items() >= expected.items()
    assert await day_totals(store, generation=reversed_order) == await day_totals(
        store, generation=in_order
    )


async def test_a_re_contact_after_the_window_keeps_the_first_contacts_fcr(
    store: MetricsStore,
) -> None:
    events = Events()
    first = events.received(
        "first", utc_at(DAY, 9), channel=Channel.WEB, area="waste", customer="x", resolved=True
    )
    eight_days_on = events.received(
        "late", utc_at(DAY + timedelta(days=8), 9), channel=Channel.WEB, area="waste", customer="x"
    )

    await apply(store, [first], [eight_days_on])

    assert "fcr_lost" not in await day_totals(store)
    assert (await day_totals(store))["fcr_first_time"] == 1


@pytest.mark.integration
@pytest.mark.parametrize("seed", range(6))
async def test_re_contacts_in_shuffled_random_batches_lose_what_the_reference_loses(
    seed: int, postgres_backend: Backend
) -> None:
    """DOMAIN.md, FCR: a contact resolved at first contact loses FCR if the same customer
    contacts again about the same service area within the window. PostgreSQL looks only at
    the candidates from a batch's first contact less the window to its last; the fake looks
    at every candidate. Shuffled and cut at random, both must lose the same contacts."""
    rng = random.Random(seed)
    events = Events()
    stream: list[Event] = [
        events.received(
            f"c{n}",
            utc_at(DAY + timedelta(days=rng.randrange(30)), rng.randrange(8, 18)),
            channel=rng.choice([Channel.WEB, Channel.PHONE]),
            area=rng.choice(["waste", "planning"]),
            customer=rng.choice("xyz"),
            resolved=rng.random() < 0.6,
        )
        for n in range(90)
    ]
    rng.shuffle(stream)
    cuts = sorted(rng.sample(range(1, len(stream)), 9))
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    reference = FakeMetricsStore()
    await apply(reference, *batches)
    await apply(postgres_backend.store, *batches)

    days = [DAY + timedelta(days=n) for n in range(31)]
    expected = [await day_totals(reference, day) for day in days]
    assert [await day_totals(postgres_backend.store, day) for day in days] == expected
    assert sum(totals.get("fcr_lost", 0) for totals in expected) > 0


async def test_a_transfer_after_receipt_counts_the_call_once_and_loses_its_fcr(
    store: MetricsStore,
) -> None:
    events = Events()
    call = events.received(
        "call", utc_at(DAY, 9), channel=Channel.PHONE, area="waste", resolved=True, wait=3
    )
    transfers = [events.transferred("call", utc_at(DAY, 9, n), area="waste") for n in (1, 2)]

    await apply(store, [call], transfers)

    totals = await day_totals(store)
    assert totals["calls_transferred"] == 1
    assert totals["call_transfers"] == 2
    assert totals["fcr_lost"] == 1


async def test_a_call_transferred_at_receipt_and_again_later_is_one_transferred_call(
    store: MetricsStore,
) -> None:
    events = Events()
    call = events.received("call", utc_at(DAY, 9), channel=Channel.PHONE, area="waste", transfers=2)
    later = events.transferred("call", utc_at(DAY, 10), area="waste")

    await apply(store, [call, later])

    totals = await day_totals(store)
    assert totals["calls_transferred"] == 1
    assert totals["call_transfers"] == 3


async def test_a_transfer_of_a_web_contact_loses_fcr_but_counts_no_call(
    store: MetricsStore,
) -> None:
    events = Events()
    form = events.received("form", utc_at(DAY, 9), channel=Channel.WEB, area="waste", resolved=True)

    await apply(store, [form], [events.transferred("form", utc_at(DAY, 10), area="waste")])

    totals = await day_totals(store)
    assert totals["fcr_lost"] == 1
    assert "call_transfers" not in totals
    assert "calls_transferred" not in totals


async def test_a_transfer_of_an_unknown_contact_counts_nothing(store: MetricsStore) -> None:
    events = Events()

    applied = await apply(store, [events.transferred("ghost", utc_at(DAY, 9), area="waste")])

    assert applied == 1
    assert await day_totals(store) == {}


async def test_contacts_resolved_abandoned_and_mystery_shops_add_their_counters(
    store: MetricsStore,
) -> None:
    events = Events()
    batch = [
        events.resolved("r", utc_at(DAY, 9), channel=Channel.EMAIL, area="waste"),
        events.abandoned("a", utc_at(DAY, 9), area="waste", wait=40),
        events.abandoned("b", utc_at(DAY, 10), area="waste", wait=20),
        events.mystery(
            "m", utc_at(DAY, 11), channel=Channel.PHONE, area="waste", scores={"a": 80, "b": 60}
        ),
    ]

    await apply(store, batch)

    assert await day_totals(store) == {
        "contacts_resolved": 1,
        "calls_abandoned": 2,
        "call_abandoned_wait_seconds": 60,
        "mystery_shops": 1,
        "mystery_score_total": 70,
    }


async def test_survey_requests_answers_expiries_and_surge_events_add_their_counters(
    store: MetricsStore,
) -> None:
    events = Events()
    contact, web = CaseType.CONTACT, Channel.WEB
    surge = SurgeDetected.model_validate(
        {
            "surge_id": "waste:contacts_received:2024-06-03",
            "occurred_at": utc_at(DAY, 12),
            "source": "civicpulse-metrics",
            "payload": {
                "service_area": "waste",
                "measure": "contacts",
                "day": DAY,
                "count": 40,
                "baseline": 5.0,
                "threshold": 20.0,
            },
        }
    )
    batch = [
        events.survey_requested(
            "s1", utc_at(DAY, 9), case="c1", case_type=contact, channel=web, area="waste"
        ),
        events.survey_requested(
            "s2", utc_at(DAY, 9), case="c2", case_type=contact, channel=web, area="waste"
        ),
        events.survey_answered(
            "s1",
            utc_at(DAY, 10),
            case="c1",
            case_type=contact,
            channel=web,
            area="waste",
            overall=5,
            ease=6,
        ),
        events.survey_expired(
            "s2", utc_at(DAY, 11), case="c2", case_type=contact, channel=web, area="waste"
        ),
        surge,
    ]

    await apply(store, batch)

    assert await day_totals(store) == {
        "surveys_requested": 2,
        "surveys_responded": 1,
        "surveys_satisfied": 1,
        "survey_ease_total": 6,
        "surveys_expired": 1,
        "surges_detected": 1,
    }


# -- complaints -------------------------------------------------------------------------


async def test_an_acknowledgement_after_its_breach_stays_late(store: MetricsStore) -> None:
    """Complaint Handling Code 4.1: acknowledge within five working days; a deadline's
    first outcome decides whether it was met."""
    events = Events()
    opened = events.complaint(
        "k", utc_at(DAY, 9), ComplaintOpened, service_area="waste", channel=Channel.EMAIL
    )
    breached = events.complaint(
        "k",
        utc_at(DAY, 10),
        ComplaintDeadlineBreached,
        service_area="waste",
        stage=1,
        deadline=DeadlineKind.ACKNOWLEDGE,
        due_date=DAY,
    )
    acknowledged = events.complaint(
        "k", utc_at(DAY, 11), ComplaintAcknowledged, service_area="waste", stage=1
    )

    await apply(store, [opened], [breached], [acknowledged])

    totals = await day_totals(store)
    assert totals["corporate_ack_due_s1"] == 1
    assert "corporate_ack_on_time_s1" not in totals
    assert totals["corporate_deadline_breaches"] == 1


async def test_one_batch_settles_a_deadline_once_and_keeps_the_last_complaint_change(
    store: MetricsStore,
) -> None:
    """Complaint Handling Code 4.1: a deadline's first outcome decides whether it was met,
    also when the breach and the late acknowledgement arrive in one batch (the batch
    records outcomes in one statement). An escalation then a withdrawal in that batch
    leaves the complaint at stage 2 and closed, as one event after the other would.
    """
    events = Events()
    facts = {"service_area": "waste"}
    batch = [
        events.complaint("k", utc_at(DAY, 9), ComplaintOpened, channel=Channel.EMAIL, **facts),
        events.complaint(
            "k",
            utc_at(DAY, 10),
            ComplaintDeadlineBreached,
            stage=1,
            deadline=DeadlineKind.ACKNOWLEDGE,
            due_date=DAY,
            **facts,
        ),
        events.complaint("k", utc_at(DAY, 11), ComplaintAcknowledged, stage=1, **facts),
        events.complaint("k", utc_at(DAY, 11), ComplaintAcknowledged, stage=1, **facts),
        events.complaint("k", utc_at(DAY, 12), ComplaintEscalated, to_stage=2, **facts),
        events.complaint("k", utc_at(DAY, 13), ComplaintWithdrawn, stage=2, **facts),
    ]

    await apply(store, batch)

    totals = await day_totals(store)
    assert totals["corporate_ack_due_s1"] == 1
    assert "corporate_ack_on_time_s1" not in totals
    assert await store.open_complaints(1) == []


async def test_a_contacts_transfers_in_one_batch_count_as_one_by_one(
    store: MetricsStore,
) -> None:
    """A call passed on three times, in one batch with its receipt: one transferred call,
    three transfers, its FCR lost once (the batch counts transfers in one statement).
    """
    events = Events()
    call = events.received(
        "call", utc_at(DAY, 9), channel=Channel.PHONE, area="waste", customer="z", resolved=True
    )
    transfers = [events.transferred("call", utc_at(DAY, 9, n), area="waste") for n in (1, 2, 3)]
    ghost = events.transferred("ghost", utc_at(DAY, 9), area="waste")

    await apply(store, [call, *transfers, ghost])

    totals = await day_totals(store)
    assert totals["calls_transferred"] == 1
    assert totals["call_transfers"] == 3
    assert totals["fcr_lost"] == 1


async def test_a_complaints_life_counts_in_the_channel_it_arrived_on(store: MetricsStore) -> None:
    """Complaint Handling Code 5 and 6: stage 1, escalation on request to stage 2, a
    response with its outcome, then a referral to the Ombudsman."""
    events = Events()
    facts = {"service_area": "housing"}
    life = [
        events.complaint("k", utc_at(DAY, 9), ComplaintOpened, channel=Channel.PHONE, **facts),
        events.complaint("k", utc_at(DAY, 10), ComplaintAcknowledged, stage=1, **facts),
        events.complaint("k", utc_at(DAY, 11), ComplaintEscalationRequested, from_stage=1, **facts),
        events.complaint("k", utc_at(DAY, 12), ComplaintEscalated, to_stage=2, **facts),
        events.complaint(
            "k",
            utc_at(DAY, 13),
            ComplaintResponded,
            stage=2,
            outcome=ComplaintOutcome.UPHELD,
            responder="s9",
            learning_actions=[
                {"description": "fix the boiler rota", "owner_team": "repairs"},
                {"description": "call back in a day", "owner_team": "contact"},
            ],
            **facts,
        ),
        events.complaint(
            "k", utc_at(DAY, 14), ComplaintReferredToOmbudsman, ombudsman="housing", **facts
        ),
    ]

    await apply(store, life[:2], life[2:])

    totals = await day_totals(store)
    assert totals == {
        "complaints_opened": 1,
        "corporate_complaints_received_s1": 1,
        "corporate_ack_due_s1": 1,
        "corporate_ack_on_time_s1": 1,
        "corporate_escalations_requested": 1,
        "corporate_complaints_received_s2": 1,
        "corporate_responded": 1,
        "corporate_responded_upheld": 1,
        "corporate_outcome_upheld_s2": 1,  # the annual report's outcome at its stage
        "corporate_learning_actions": 2,
        "corporate_response_due_s2": 1,
        "corporate_response_on_time_s2": 1,
        "corporate_ombudsman_referrals": 1,
    }
    assert await store.totals(1, DateRange(DAY, DAY), channel="phone") == totals
    (still_open,) = await store.open_complaints(1)
    assert (still_open.scope, still_open.stage, still_open.count) == ("corporate", 2, 1)


async def test_closed_and_withdrawn_complaints_are_no_longer_open(store: MetricsStore) -> None:
    events = Events()
    social_care = ComplaintProcedure.ADULT_SOCIAL_CARE
    opened = [
        events.complaint(
            "a",
            utc_at(DAY, 9),
            ComplaintOpened,
            service_area="adult_social_care",
            procedure=social_care,
            statutory=True,
            channel=Channel.WEB,
        ),
        events.complaint(
            "b", utc_at(DAY, 9), ComplaintOpened, service_area="waste", channel=Channel.WEB
        ),
        events.complaint(
            "c", utc_at(DAY, 9), ComplaintOpened, service_area="waste", channel=Channel.EMAIL
        ),
    ]
    ended = [
        events.complaint(
            "a",
            utc_at(DAY, 10),
            ComplaintWithdrawn,
            service_area="adult_social_care",
            procedure=social_care,
            stage=1,
        ),
        events.complaint(
            "b", utc_at(DAY, 10), ComplaintClosed, final_stage=1, service_area="waste"
        ),
    ]

    await apply(store, opened)
    assert [(o.scope, o.stage, o.count) for o in await store.open_complaints(1)] == [
        ("corporate", 1, 2),
        ("statutory", 1, 1),
    ]
    await apply(store, ended)

    assert [(o.scope, o.count) for o in await store.open_complaints(1)] == [("corporate", 1)]
    assert await store.open_complaints(1, channel="web") == []
    assert (await day_totals(store))["statutory_withdrawn"] == 1


# -- exactly once, transactions ---------------------------------------------------------


async def test_a_redelivered_batch_and_a_repeat_inside_a_batch_count_once(
    store: MetricsStore,
) -> None:
    events = Events()
    call = events.received("call", utc_at(DAY, 9), channel=Channel.PHONE, area="waste", wait=5)

    first = await apply(store, [call, call])
    again = await apply(store, [call])

    assert (first, again) == (1, 0)
    assert (await day_totals(store))["calls_answered"] == 1


async def test_a_batch_whose_transaction_fails_leaves_nothing_and_counts_on_redelivery(
    store: MetricsStore,
) -> None:
    events = Events()
    call = events.received("call", utc_at(DAY, 9), channel=Channel.PHONE, area="waste", wait=5)

    async def batch_that_fails_before_commit() -> None:
        async with store.transaction() as tx:
            await APPLIER.apply(tx, 1, [call])
            raise RuntimeError("commit failed")

    with pytest.raises(RuntimeError, match="commit failed"):
        await batch_that_fails_before_commit()
    assert await day_totals(store) == {}

    assert await apply(store, [call]) == 1
    assert (await day_totals(store))["calls_answered"] == 1


async def test_writes_outside_a_transaction_are_refused(store: MetricsStore) -> None:
    with pytest.raises(NotInTransactionError):
        await store.first_times(1, [uuid.uuid4()])


async def test_the_live_consumer_applies_to_the_live_generation(store: MetricsStore) -> None:
    events = Events()
    live = LiveConsumer(store, APPLIER)
    generation = await store.start_generation()
    await store.switch_generation(generation)

    await live.handle([events.received("c", utc_at(DAY, 9), channel=Channel.WEB, area="waste")])

    assert (await day_totals(store, generation=generation))["contacts_received"] == 1
    assert await day_totals(store, generation=1) == {}


class CommitFails:
    """A store whose transactions all roll back at the end, as a failed commit does."""

    def __init__(self, store: MetricsStore) -> None:
        self._store = store

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MetricsStore]:
        async with self._store.transaction() as tx:
            yield tx
            raise RuntimeError("commit failed")


async def test_prometheus_counts_a_batch_only_after_its_commit(store: MetricsStore) -> None:
    """A batch that fails is retried (event by event, then redelivered): counting before
    the commit would count its events once per attempt, beside exact PostgreSQL figures."""
    events = Events()
    contact = events.received("c", utc_at(DAY, 9), channel=Channel.WEB, area="waste")
    registry = CollectorRegistry()
    metrics = ConsumerMetrics(registry)

    def counted(name: str) -> float:
        return registry.get_sample_value(name, {"topic": CONTACTS.name}) or 0.0

    failing = LiveConsumer(cast(MetricsStore, CommitFails(store)), APPLIER, metrics)
    with pytest.raises(RuntimeError, match="commit failed"):
        await failing.handle([contact])
    assert counted("metrics_events_processed_total") == 0

    live = LiveConsumer(store, APPLIER, metrics)
    await live.handle([contact])
    await live.handle([contact])  # redelivered after the commit: a duplicate

    assert counted("metrics_events_processed_total") == 1
    assert counted("metrics_events_duplicate_total") == 1
    assert (await day_totals(store))["contacts_received"] == 1


# -- surges -----------------------------------------------------------------------------

SURGE_RULE = SurgeRule(window_days=7, k=3.0, ratio=2.0, minimum=5)


def contacts_on(events: Events, day: date, count: int) -> list[Event]:
    return [
        events.received(f"{day}-{n}", utc_at(day, 9), channel=Channel.WEB, area="waste")
        for n in range(count)
    ]


async def test_a_sustained_surge_is_one_surge_raised_once(backend: Backend) -> None:
    """DOMAIN.md, surges: above max(mean + k·sd, mean·ratio, minimum) of the days before;
    consecutive surge days are one surge, raised on its first recent day."""
    events = Events()
    quiet = [day for n in range(7) for day in [DAY + timedelta(days=n)]]
    first, second = DAY + timedelta(days=7), DAY + timedelta(days=8)

    def applier(today: date) -> BatchApplier:
        clock = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
        return BatchApplier(rules=Rules(surge=SURGE_RULE), clock=lambda: clock, publish_surges=True)

    await apply(
        backend.store,
        [e for day in quiet for e in contacts_on(events, day, 2)],
        applier=applier(quiet[-1]),
    )
    await apply(backend.store, contacts_on(events, first, 12), applier=applier(first))
    await apply(backend.store, contacts_on(events, second, 12), applier=applier(second))

    surges = await backend.store.surges_between(1, DateRange(DAY, second))
    assert [(s.day, s.surge_id, s.count) for s in surges] == [
        (first, f"waste:contacts_received:{first}", 12),
        (second, f"waste:contacts_received:{first}", 12),
    ]
    assert surges[1].baseline == 2  # the first surge day stands in as an ordinary day
    (raised,) = await backend.published()
    assert isinstance(raised, SurgeDetected)
    assert raised.surge_id == f"waste:contacts_received:{first}"
    assert (raised.payload.measure, raised.payload.day, raised.payload.count) == (
        "contacts",
        first,
        12,
    )


async def test_a_surge_in_replayed_history_is_recorded_but_raises_nothing(
    backend: Backend,
) -> None:
    events = Events()
    late = BatchApplier(rules=Rules(surge=SURGE_RULE), clock=lambda: NOW, publish_surges=True)
    quiet = [e for n in range(7) for e in contacts_on(events, DAY + timedelta(days=n), 1)]

    await apply(backend.store, quiet, contacts_on(events, DAY + timedelta(days=7), 9), applier=late)

    assert len(await backend.store.surges_between(1, DateRange(DAY, NOW.date()))) == 1
    assert await backend.published() == []


# -- complaints overdue ----------------------------------------------------------------


def overdue_case(events: Events, name: str, area: str) -> tuple[Event, Event, Event, Event]:
    opened = events.complaint(
        name, utc_at(DAY, 9), ComplaintOpened, service_area=area, channel=Channel.WEB
    )
    breached = events.complaint(
        name,
        utc_at(DAY + timedelta(days=7), 0, 5),
        ComplaintDeadlineBreached,
        service_area=area,
        stage=1,
        deadline=DeadlineKind.ACKNOWLEDGE,
        due_date=DAY + timedelta(days=7),
    )
    acknowledged = events.complaint(
        name, utc_at(DAY + timedelta(days=8), 10), ComplaintAcknowledged, service_area=area, stage=1
    )
    closed = events.complaint(
        name, utc_at(DAY + timedelta(days=9), 10), ComplaintClosed, service_area=area, final_stage=1
    )
    return opened, breached, acknowledged, closed


async def test_an_open_complaint_is_overdue_from_its_breach_until_the_action_is_taken(
    store: MetricsStore,
) -> None:
    """DOMAIN.md, Complaints: "A deadline that passes without the due action emits
    ComplaintDeadlineBreached"; events may arrive in any order ("backfills and outages
    reorder them"), so an action seen before its breach still leaves nothing overdue."""
    events = Events()
    waiting = overdue_case(events, "waiting", "waste")
    late = overdue_case(events, "late", "waste")
    reordered = overdue_case(events, "reordered", "planning")
    closed = overdue_case(events, "closed", "housing")

    await apply(store, [waiting[0], late[0], reordered[0], closed[0]])
    await apply(store, [waiting[1], late[1], reordered[2], closed[1]])
    overdue_before = await store.overdue_complaints(1)
    await apply(store, [late[2], reordered[1], closed[3]])

    assert overdue_before == {"housing": 1, "waste": 2}
    assert await store.overdue_complaints(1) == {"waste": 1}  # only "waiting" is left


# -- survey comments -------------------------------------------------------------------


async def test_a_survey_answer_counts_the_same_whether_its_comment_travelled_or_not(
    store: MetricsStore,
) -> None:
    """Issue 12, item 7: comments stay in feedback (SatisfactionResponded v2 carries a
    `comment_ref`); metrics keeps no copy, and an old version 1 answer with its text,
    replayed from the topic, counts exactly as before."""
    events = Events()
    kept_apart = events.survey_answered(
        "kept-apart",
        utc_at(DAY, 10),
        case="k",
        case_type=CaseType.CONTACT,
        channel=Channel.WEB,
        area="waste",
        overall=2,
        ease=3,
        comment_ref="kept-apart",
    )
    silent = events.survey_answered(
        "silent",
        utc_at(DAY, 11),
        case="j",
        case_type=CaseType.CONTACT,
        channel=Channel.PHONE,
        area="waste",
        overall=5,
        ease=7,
    )
    old = SatisfactionRespondedV1.model_validate(
        {
            **silent.model_dump(exclude={"schema_version", "payload", "event_id"}),
            "request_id": events.id("old"),
            "payload": {
                **silent.payload.model_dump(exclude={"comment_ref"}),
                "case_id": events.id("m"),
                "overall": 4,
                "comment": "Bins missed again",
            },
        }
    )
    replayed = parse_event(old.to_bytes())

    await apply(store, [kept_apart, silent], [replayed])

    assert isinstance(replayed, SatisfactionResponded)
    assert replayed.payload.comment_ref == old.request_id
    totals = await day_totals(store)
    assert (totals["surveys_responded"], totals["surveys_satisfied"]) == (3, 2)
    assert totals["survey_ease_total"] == 3 + 7 + 7


# -- reads and generations --------------------------------------------------------------


async def test_totals_over_whole_months_and_odd_days_add_up_to_what_was_sent(
    store: MetricsStore,
) -> None:
    events = Events()
    days = [date(2024, 5, 31), date(2024, 6, 1), date(2024, 6, 17), date(2024, 6, 30)]
    days += [date(2024, 7, 1), date(2024, 7, 2)]
    sent = [
        events.received(f"c{n}", utc_at(day, 9), channel=channel, area=area)
        for n, (day, channel, area) in enumerate(
            (day, channel, area)
            for day in days
            for channel, area in ((Channel.WEB, "waste"), (Channel.PHONE, "housing"))
        )
    ]

    await apply(store, sent[:5], sent[5:])

    span = DateRange(date(2024, 5, 31), date(2024, 7, 1))  # June whole, two odd days
    in_span = [e for e in sent if span.start <= e.occurred_at.date() <= span.end]
    assert (await store.totals(1, span))["contacts_received"] == len(in_span)
    assert (await store.totals(1, span, service_area="waste"))["contacts_received"] == 5
    by_channel = await store.totals_by(1, span, "channel")
    assert {k: v["contacts_received"] for k, v in by_channel.items()} == {"web": 5, "phone": 5}
    by_area = await store.totals_by(1, span, "service_area")
    assert {k: v["calls_answered"] for k, v in by_area.items() if "calls_answered" in v} == {
        "housing": 5
    }
    daily = await store.daily_totals(1, span, ["contacts_received"], channel="web")
    assert daily == {day: {"contacts_received": 1} for day in days[:5]}
    assert await store.measure_totals_by_area(1, "contacts_received") == {
        "waste": 6,
        "housing": 6,
    }
    with pytest.raises(ValueError, match="cannot group by"):
        await store.totals_by(1, span, "measure")


async def test_topic_progress_counts_events_per_topic_and_keeps_the_newest(
    store: MetricsStore,
) -> None:
    events = Events()
    early = events.received("a", utc_at(DAY, 9), channel=Channel.WEB, area="waste")
    late = events.received("b", utc_at(DAY, 15), channel=Channel.WEB, area="waste")
    opened = events.complaint(
        "k", utc_at(DAY, 10), ComplaintOpened, service_area="waste", channel=Channel.WEB
    )

    await apply(store, [late, opened], [early])

    states = {s.topic: s for s in await store.topic_states(1)}
    assert {topic: s.events for topic, s in states.items()} == {
        "civicpulse.complaints": 1,
        "civicpulse.contacts": 2,
    }
    assert states["civicpulse.contacts"].last_occurred_at == utc_at(DAY, 15)


async def test_a_rebuild_generation_switches_in_and_the_one_before_last_is_dropped(
    store: MetricsStore,
) -> None:
    events = Events()
    call = events.received("c", utc_at(DAY, 9), channel=Channel.WEB, area="waste")
    await apply(store, [call])
    abandoned = await store.start_generation()
    await apply(store, [call], generation=abandoned)

    second = await store.start_generation()  # discards the unfinished one, rows and all
    assert await day_totals(store, generation=second) == {}
    await apply(store, [call], generation=second)
    assert await store.switch_generation(second) == 1
    third = await store.start_generation()
    await apply(store, [call], generation=third)
    assert await store.switch_generation(third) == second

    assert (abandoned, second, third) == (2, 2, 3)
    assert await store.live_generation() == third
    assert await store.drop_retired_before(second) == [1]
    assert await day_totals(store, generation=1) == {}
    assert (await day_totals(store, generation=second))["contacts_received"] == 1
    assert (await day_totals(store, generation=third))["contacts_received"] == 1


# -- the fake and the table themselves (no backend) ---------------------------------------


def test_the_fake_store_overrides_every_public_store_method() -> None:
    public = {
        name
        for cls in MetricsStore.__mro__
        if cls is not object
        for name, member in vars(cls).items()
        if not name.startswith("_") and callable(member)
    }

    assert len(public) >= 25
    assert public <= set(vars(FakeMetricsStore))
    for name in public - {"transaction"}:
        assert inspect.iscoroutinefunction(getattr(FakeMetricsStore, name)), name


def test_every_canonical_event_has_a_handler_or_is_known_to_change_no_counter() -> None:
    canonical = {cls for topic in CANONICAL_TOPICS for cls in EVENTS_BY_TOPIC[topic]}
    changes_nothing: set[type[Event]] = {
        ComplaintPanelStepRecorded,
        *OLD_COMPLAINT_EVENTS,  # read as their current versions (parse_event upcasts them)
        SatisfactionRespondedV1,  # likewise
        CustomerOptedOut,
        KpiTargetMissed,
    }

    assert set(HANDLERS) | changes_nothing == canonical
    assert not set(HANDLERS) & changes_nothing


def test_the_catalogue_maps_exactly_the_canonical_topics() -> None:
    assert tuple(EVENTS_BY_TOPIC) == CANONICAL_TOPICS
