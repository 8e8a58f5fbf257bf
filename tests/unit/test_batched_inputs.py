"""Set-based batches take effect exactly as their records would one by one.

Consumers hand whole batches to complaints and feedback, which read and write
them with one statement per table (issue 15). These tests send streams with
duplicates inside a batch and across batches, split at random, and hold the
batch path to an independent record of what was sent: the per-action path
(`ComplaintsHandler.apply`, a savepoint per action), single-record batches,
and a ledger of the distinct inputs. Seeded, so a failure replays.
"""

import json
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from services.complaints.actions import Action
from services.complaints.domain import Refusal, action_key
from services.complaints.handlers import Applied, ComplaintsHandler, ComplaintsMetrics, Outcome
from services.complaints.procedures import Policy
from services.complaints.settings import SERVICE as COMPLAINTS
from services.complaints.store import MIGRATIONS as COMPLAINTS_MIGRATIONS
from services.complaints.store import ComplaintsStore
from services.complaints.working_days import WorkingDayCalendar
from services.feedback.batch import BatchConflictError
from services.feedback.handlers import FeedbackHandler, FeedbackMetrics, NotifyTemplates, policy_of
from services.feedback.links import AnswerLinks
from services.feedback.notifications import ContactRoute
from shared import timers
from shared.events import ComplaintWithdrawn, ComplaintWithdrawnPayload, Event
from shared.events.vocabulary import CaseType
from shared.kafka import OutgoingRecord
from shared.outbox import enqueue_records
from shared.postgres import create_pool, migrate
from shared.timers import Timer, TimerChanges
from tests.support.complaints import action, london_at
from tests.support.fake_complaints_store import FakeComplaintsStore
from tests.support.fake_feedback_store import (
    FakeFeedbackBackend,
    FeedbackBackend,
    PostgresFeedbackBackend,
)
from tests.support.feedback import DELAY, EXPIRY, TOKEN_SECRET, complaint_events, contact_resolved

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


def split(items: Sequence[Any], rng: random.Random) -> list[list[Any]]:
    """`items` in order, cut into batches of 1 to 12."""
    batches: list[list[Any]] = []
    start = 0
    while start < len(items):
        size = rng.randint(1, 12)
        batches.append(list(items[start : start + size]))
        start += size
    return batches


# -- shared: the timer and outbox writers ------------------------------------------------


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    try:
        await migrate(pool, COMPLAINTS, COMPLAINTS_MIGRATIONS)
        yield pool
    finally:
        await pool.close()


async def _timer_rows(pool: asyncpg.Pool, service: str) -> dict[str, tuple[Any, ...]]:
    rows = await pool.fetch(
        """
        SELECT timer_id, kind, subject, due_at, payload, fired_at IS NOT NULL AS fired,
               cancelled_at IS NOT NULL AS cancelled
        FROM timers WHERE service = $1
        """,
        service,
    )
    return {r["timer_id"]: tuple(r)[1:] for r in rows}


@pytest.mark.integration
async def test_buffered_timer_changes_end_as_the_same_calls_one_by_one(pool: asyncpg.Pool) -> None:
    """Any run of schedule and cancel calls, from any starting state (absent, pending,
    fired, cancelled), leaves each timer as the single calls would, in one statement."""
    rng = random.Random(15)
    one_by_one, batched = f"t1-{uuid.uuid4().hex[:8]}", f"t2-{uuid.uuid4().hex[:8]}"
    for round_ in range(60):
        ids = [f"r{round_}-{n}" for n in range(4)]
        starts = {
            timer_id: rng.choice(["absent", "pending", "fired", "cancelled"]) for timer_id in ids
        }
        for service in (one_by_one, batched):
            async with pool.acquire() as connection:
                for timer_id, start in starts.items():
                    if start == "absent":
                        continue
                    await timers.schedule(connection, service, _timer(timer_id, 0))
                    if start == "fired":
                        await connection.execute(
                            "UPDATE timers SET fired_at = now()"
                            " WHERE service = $1 AND timer_id = $2",
                            service,
                            timer_id,
                        )
                    elif start == "cancelled":
                        await timers.cancel(connection, service, timer_id)
        calls = [
            (rng.choice(["schedule", "cancel"]), rng.choice(ids), rng.randint(1, 5))
            for _ in range(rng.randint(1, 8))
        ]
        changes = TimerChanges()
        async with pool.acquire() as connection, connection.transaction():
            for verb, timer_id, hours in calls:
                if verb == "schedule":
                    await timers.schedule(connection, one_by_one, _timer(timer_id, hours))
                    changes.schedule(_timer(timer_id, hours))
                else:
                    await timers.cancel(connection, one_by_one, timer_id)
                    changes.cancel(timer_id)
            await changes.write(connection, batched)
        assert await _timer_rows(pool, batched) == await _timer_rows(pool, one_by_one), calls


def _timer(timer_id: str, hours: int) -> Timer:
    return Timer(timer_id, "acknowledge", "S", NOW + timedelta(hours=hours), {"h": hours})


@pytest.mark.integration
async def test_one_outbox_statement_keeps_the_records_order(pool: asyncpg.Pool) -> None:
    """The relay publishes by id: ids must follow the order the records were written in."""
    service = f"o-{uuid.uuid4().hex[:8]}"
    records = [
        OutgoingRecord(
            "civicpulse.complaints", f"k{n % 7}".encode(), str(n).encode(), {"n": str(n)}
        )
        for n in range(1500)
    ]
    async with pool.acquire() as connection, connection.transaction():
        await enqueue_records(connection, service, records)
    rows = await pool.fetch(
        "SELECT value, headers FROM outbox WHERE service = $1 ORDER BY id", service
    )
    assert [bytes(r["value"]) for r in rows] == [r.value for r in records]
    assert [json.loads(r["headers"])["n"] for r in rows] == [str(n) for n in range(1500)]


# -- complaints: batches against the per-action path ---------------------------------------

KINDS = ["open", "acknowledge", "respond", "request_escalation", "extend", "withdraw", "close"]


def action_stream(rng: random.Random, prefix: str) -> list[Action]:
    """Actions on three complaints over a few weeks, about a third of them sent again."""
    sent: list[Action] = []
    day = date(2026, 1, 5)
    for n in range(90):
        if sent and rng.random() < 0.3:
            sent.append(rng.choice(sent))  # the same record again: same action_id
            continue
        day += timedelta(days=rng.choice([0, 0, 1]))
        kind = rng.choice(KINDS)
        fields: dict[str, Any] = {}
        if kind == "respond":
            fields["responder"] = f"officer-{rng.randint(1, 2)}"
        if kind == "extend":
            fields["days"] = 5
        if kind == "close":
            fields["reason"] = "resolved by phone"
        complaint_id = f"{prefix}-{rng.randint(0, 2)}"
        sent.append(action(kind, complaint_id, f"a{n}", london_at(day), **fields))
    return sent


def describe(outcome: Outcome) -> str:
    if isinstance(outcome, Refusal):
        return f"refused:{outcome.reason.value}"
    return type(outcome).__name__


def complaints_handler(store: ComplaintsStore) -> ComplaintsHandler:
    return ComplaintsHandler(
        store=store,
        calendar=WorkingDayCalendar(),
        policy=Policy(),
        metrics=ComplaintsMetrics(CollectorRegistry()),
        clock=lambda: NOW,
    )


async def complaint_effects(store: ComplaintsStore, complaint_ids: Sequence[str]) -> Any:
    """Each complaint's state, its events in order and its pending timers."""
    states = {c: (await store.get(c)) for c in complaint_ids}
    if isinstance(store, FakeComplaintsStore):
        events = [(e.complaint_id, e.event_type) for e in store.outbox]
        pending = {(t.timer_id, t.due_at) for t in store.pending_timers().values()}
    else:
        rows = await store.pool.fetch(
            "SELECT key, value FROM outbox"
            " WHERE service = $1 AND key = ANY($2::bytea[]) ORDER BY id",
            COMPLAINTS,
            [c.encode() for c in complaint_ids],
        )
        events = [(bytes(r["key"]).decode(), json.loads(r["value"])["event_type"]) for r in rows]
        timer_rows = await store.pool.fetch(
            """
            SELECT timer_id, due_at FROM timers WHERE service = $1 AND subject = ANY($2::text[])
              AND fired_at IS NULL AND cancelled_at IS NULL
            """,
            COMPLAINTS,
            list(complaint_ids),
        )
        pending = {(r["timer_id"], r["due_at"]) for r in timer_rows}
    dumped = {c: s.model_dump() if s else None for c, s in states.items()}
    return dumped, events, sorted(pending)


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.integration)])
def complaint_stores(request: pytest.FixtureRequest) -> tuple[ComplaintsStore, ComplaintsStore]:
    """Two stores with nothing in common: one for batches, one for the per-action path."""
    if request.param == "fake":
        return FakeComplaintsStore(), FakeComplaintsStore()
    shared: asyncpg.Pool = request.getfixturevalue("pool")
    return ComplaintsStore(shared), ComplaintsStore(shared)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_action_batches_with_duplicates_apply_each_action_once_as_one_by_one(
    complaint_stores: tuple[ComplaintsStore, ComplaintsStore], seed: int
) -> None:
    """Complaint Handling Code 5.1-6.x as `decide` implements them; an action_id sent
    again is applied once (services/complaints/actions.py), whether the copy is in the
    same batch or a later one, and a refused action leaves no record."""
    rng = random.Random(seed)
    prefix = f"CMP-{uuid.uuid4().hex[:8]}"
    batched_store, single_store = complaint_stores
    if isinstance(batched_store, ComplaintsStore) and not isinstance(
        batched_store, FakeComplaintsStore
    ):
        # One database for both: the per-action path works on its own complaint ids.
        single_prefix = prefix + "s"
    else:
        single_prefix = prefix
    stream = action_stream(rng, prefix)
    batched, single = complaints_handler(batched_store), complaints_handler(single_store)

    batch_outcomes: list[str] = []
    for batch in split(stream, rng):
        faults = await batched.handle_actions(batch)
        batch_outcomes += ["refused" if f is not None else "-" for f in faults]
    single_outcomes: list[Outcome] = []
    for item in stream:
        renamed = item.model_copy(
            update={"complaint_id": item.complaint_id.replace(prefix, single_prefix)}
        )
        single_outcomes.append(await single.apply(renamed))

    assert batch_outcomes == ["refused" if isinstance(o, Refusal) else "-" for o in single_outcomes]
    ids = [f"{prefix}-{n}" for n in range(3)]
    batched_effects = await complaint_effects(batched_store, ids)
    single_effects = await complaint_effects(
        single_store, [i.replace(prefix, single_prefix) for i in ids]
    )
    assert _normal(single_effects, single_prefix, prefix) == _normal(batched_effects)
    # The ledger: each distinct action key applied at most once, and as often as one by one.
    applied = [
        action_key(a)
        for a, o in zip(stream, single_outcomes, strict=True)
        if isinstance(o, Applied)
    ]
    assert len(applied) == len(set(applied))
    assert len(applied) > 5  # the stream exercised the lifecycle, not only refusals


def _normal(value: Any, old: str = "", new: str = "") -> Any:
    """JSON-comparable, with one complaint-id prefix put for another."""
    text = json.dumps(value, default=str)
    return json.loads(text.replace(old, new) if old else text)


# -- feedback: decision and send batches against single-record batches ------------------

RESOLVED_AT = NOW - timedelta(hours=2)
CUSTOMERS = ["K0", "K1", "K2", "K3"]  # K3 has no contact route


def resolution_stream(rng: random.Random, prefix: str) -> list[Event]:
    """Contacts resolved (some twice), complaints opened on them, closed or withdrawn, for
    four customers within the quiet period; about a quarter sent again (same event id)."""
    sent: list[Event] = []
    for n in range(70):
        if sent and rng.random() < 0.25:
            sent.append(rng.choice(sent))
            continue
        customer = f"{prefix}{rng.choice(CUSTOMERS)}"
        at = RESOLVED_AT + timedelta(minutes=n)
        contact = f"{prefix}-c{rng.randint(0, 9)}"
        roll = rng.random()
        if roll < 0.5:
            sent.append(contact_resolved(contact, customer, at))
            continue
        complaint = f"{prefix}-m{rng.randint(0, 4)}"
        opened, _, _, closed = complaint_events(complaint, customer, contact, at)
        if roll < 0.7:
            sent.append(opened)
        elif roll < 0.9:
            sent.append(closed.model_copy(update={"occurred_at": at}))
        else:
            sent.append(
                ComplaintWithdrawn(
                    complaint_id=complaint,
                    occurred_at=at,
                    source="civicpulse-complaints",
                    payload=ComplaintWithdrawnPayload(service_area="waste", stage=1),
                )
            )
    return sent


def feedback_handler(backend: FeedbackBackend) -> FeedbackHandler:
    return FeedbackHandler(
        backend.store,
        policy=policy_of(DELAY.total_seconds() / 3600, EXPIRY.days, 30),
        links=AnswerLinks(TOKEN_SECRET),
        public_url="http://feedback.test",
        templates=NotifyTemplates(email="email-template", sms="sms-template"),
        metrics=FeedbackMetrics(CollectorRegistry()),
        clock=lambda: NOW,
    )


@pytest.fixture
async def second_feedback_database(infrastructure: Any) -> AsyncIterator[asyncpg.Pool]:
    from civicpulse.infra import scratch_database

    name = f"civicpulse_test_{uuid.uuid4().hex[:12]}"
    async with scratch_database(infrastructure.database_url, name) as url:
        pool = await create_pool(url)
        try:
            yield pool
        finally:
            await pool.close()


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.integration)])
def feedback_backends(request: pytest.FixtureRequest) -> tuple[FeedbackBackend, FeedbackBackend]:
    """Two stores with nothing in common: one for batches, one for single records."""
    if request.param == "fake":
        return FakeFeedbackBackend(), FakeFeedbackBackend()
    return (
        PostgresFeedbackBackend(request.getfixturevalue("store_pool")),
        PostgresFeedbackBackend(request.getfixturevalue("second_feedback_database")),
    )


@pytest.mark.parametrize("seed", [4, 5, 6])
async def test_resolution_batches_with_duplicates_decide_as_one_by_one_and_send_once(
    feedback_backends: tuple[FeedbackBackend, FeedbackBackend], seed: int
) -> None:
    """DOMAIN.md, "Satisfaction": one request per case after the delay, unless opted out,
    without a contact route or within the quiet period; never two for one case. Every
    resolution sent leaves exactly one decision (a request or a suppression), however
    often it was delivered and however the batches were cut."""
    rng = random.Random(seed)
    prefix = f"F{uuid.uuid4().hex[:6]}"
    stream = resolution_stream(rng, prefix)
    batched_backend, single_backend = feedback_backends
    results = []
    for backend, batches in (
        (batched_backend, split(stream, rng)),
        (single_backend, [[event] for event in stream]),
    ):
        await backend.reset()
        handler = feedback_handler(backend)
        for customer in CUSTOMERS[:3]:
            await backend.store.put_contact_route(
                f"{prefix}{customer}", ContactRoute(email="r@example.org"), NOW
            )
        for batch in batches:
            await handler.handle(batch)
        decided = await decisions_of(backend, prefix)
        timers_before = await backend.pending_timers()
        fired = await backend.fire_due(handler, NOW + DELAY + timedelta(days=1))
        fired_again = await backend.fire_due(handler, NOW + DELAY + timedelta(days=1))
        messages = sorted(m.reference for m in await backend.notifications())
        requested = [
            e for e in await backend.outbox_events() if e.event_type == "SatisfactionRequested"
        ]
        results.append(
            (decided, [(t.timer_id, t.due_at, t.payload) for t in timers_before], messages)
        )
        # The ledger: what was sent, not what arrived.
        deciding = {
            e.event_id for e in stream if e.event_type in ("ContactResolved", "ComplaintClosed")
        }
        causes = [t.payload.get("causation_id") for t in timers_before]
        traces = [str(event_id) for event_id in decided["suppressed"]] + [str(c) for c in causes]
        assert sorted(traces) == sorted(str(event_id) for event_id in deciding)
        assert len(requested) == len(messages) == fired == len(timers_before)
        assert fired_again == 0
        assert len(set(messages)) == len(messages)
    assert results[0] == results[1]
    assert results[0][0]["requests"], "the stream scheduled nothing: it tests nothing"


async def decisions_of(backend: FeedbackBackend, prefix: str) -> dict[str, Any]:
    """Every request (by case) and every suppression (by event) the backend holds."""
    requests: dict[tuple[str, str], Any] = {}
    suppressed: dict[Any, str] = {}
    for case_type, names in ((CaseType.CONTACT, "c"), (CaseType.COMPLAINT, "m")):
        for n in range(10):
            case_id = f"{prefix}-{names}{n}"
            request = await backend.store.request_for_case(case_type, case_id)
            if request is not None:
                requests[(case_type.value, case_id)] = (
                    request.request_id,
                    request.customer_ref,
                    request.send_at,
                    request.resolved_at,
                )
    suppressed = await _suppressions(backend, prefix)
    return {"requests": requests, "suppressed": suppressed}


async def _suppressions(backend: FeedbackBackend, prefix: str) -> dict[Any, str]:
    if isinstance(backend, FakeFeedbackBackend):
        return {
            event_id: reason
            for event_id, ((_, case_id), reason, _) in backend.store.state.suppressions.items()
            if case_id.startswith(prefix)
        }
    rows = await backend.pool.fetch(
        "SELECT event_id, reason FROM feedback_suppressions WHERE case_id LIKE $1 || '%'", prefix
    )
    return {row["event_id"]: row["reason"] for row in rows}


@pytest.mark.integration
async def test_a_failing_timer_batch_is_undone_and_fired_timer_by_timer(pool: asyncpg.Pool) -> None:
    """The batch callback's effects roll back with its savepoint; the timers then fire one
    by one, each effect once, and only the bad timer waits for its next attempt."""
    service = f"f-{uuid.uuid4().hex[:8]}"
    await pool.execute("CREATE TABLE IF NOT EXISTS batch_effects (service text, timer_id text)")
    async with pool.acquire() as connection:
        for n in range(20):
            subject = "poison" if n == 7 else f"s{n}"
            await timers.schedule(connection, service, Timer(f"t{n}", "k", subject, NOW, {}))

    async def effect(connection: Any, timer: Timer) -> None:
        await connection.execute(
            "INSERT INTO batch_effects VALUES ($1, $2)", service, timer.timer_id
        )
        if timer.subject == "poison":
            raise ValueError("a timer no retry will fix")

    async def effects(connection: Any, due: Sequence[Timer]) -> None:
        for timer in due:
            await effect(connection, timer)

    scheduler = timers.TimerScheduler(pool, service, effect, fire_batch=effects, batch_size=50)
    fired = await scheduler.fire_due(NOW)

    rows = await pool.fetch("SELECT timer_id FROM batch_effects WHERE service = $1", service)
    assert fired == 19
    assert sorted(r["timer_id"] for r in rows) == sorted(f"t{n}" for n in range(20) if n != 7)
    waiting = await pool.fetchval(
        "SELECT attempts FROM timers WHERE service = $1 AND timer_id = 't7' AND fired_at IS NULL",
        service,
    )
    assert waiting == 1


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.integration)])
def feedback_backend(request: pytest.FixtureRequest) -> FeedbackBackend:
    if request.param == "fake":
        return FakeFeedbackBackend()
    return PostgresFeedbackBackend(request.getfixturevalue("store_pool"))


async def test_a_request_another_writer_inserted_meanwhile_is_never_a_second_one(
    feedback_backend: FeedbackBackend,
) -> None:
    """DOMAIN.md, "Satisfaction": never two requests for one case. A batch whose loaded
    view missed a request inserted meanwhile writes nothing and says so; alone, the
    resolution is decided again and suppressed as already requested."""
    backend = feedback_backend
    await backend.reset()
    blind_store = _blind_to_requests(backend.store)
    backend.store = blind_store
    handler = feedback_handler(backend)
    for customer in ("K0", "K1", "K2"):
        await blind_store.put_contact_route(customer, ContactRoute(email="r@example.org"), NOW)
    first = contact_resolved("c-1", "K0", RESOLVED_AT)
    await handler.handle([first])  # the other writer's request, from an earlier batch
    # The same contact under another customer: no quiet period hides the case's request.
    again = contact_resolved("c-1", "K2", RESOLVED_AT + timedelta(minutes=1))
    other = contact_resolved("c-2", "K1", RESOLVED_AT)

    with pytest.raises(BatchConflictError):
        await handler.handle([other, again])
    await handler.handle([again])

    assert (await backend.store.request_for_case(CaseType.CONTACT, "c-2")) is None  # undone
    suppressed = await backend.store.suppressions_for(CaseType.CONTACT, "c-1")
    assert [reason for reason, _ in suppressed] == ["already_requested"]
    assert len(await backend.pending_timers()) == 1


def _blind_to_requests(store: Any) -> Any:
    """The same store, but a batch's load sees no earlier requests (as if loaded before)."""

    class Blind(type(store)):  # type: ignore[misc]
        async def requested_cases(self, case_keys: Any) -> set[Any]:
            return set()

    blind = Blind.__new__(Blind)
    blind.__dict__.update(store.__dict__)
    return blind
