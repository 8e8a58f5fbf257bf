"""The complaints handlers, each test body run twice: on the in-memory fake store and on
PostgreSQL (marked integration), so the fake cannot drift from the real store.

Time is injected: the handler's clock is a `FakeClock`, and due timers are fired by
`Backend.fire_due(now)` (the real `TimerScheduler` on PostgreSQL, the same claim
rule on the fake).
"""

import inspect
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from services.complaints.domain import Complaint, Refusal, RefusalReason, Status
from services.complaints.handlers import Applied, ComplaintsHandler, ComplaintsMetrics, Duplicate
from services.complaints.procedures import Policy
from services.complaints.settings import SERVICE
from services.complaints.store import MIGRATIONS, ComplaintsStore, WorklistQuery
from services.complaints.working_days import WorkingDayCalendar, end_of_local_day
from shared.consumer import ConsumerSettings, Fault, InboundRecord
from shared.dead_letters import SourcePosition
from shared.postgres import create_pool, migrate
from shared.timers import TimerScheduler
from tests.support.complaints import action, action_bytes, london_at
from tests.support.fake_complaints_store import FakeComplaintsStore

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Backend:
    kind: str
    store: ComplaintsStore
    calendar: WorkingDayCalendar = field(default_factory=WorkingDayCalendar)
    clock: FakeClock = field(default_factory=lambda: FakeClock(NOW))
    dead_letters: list[tuple[InboundRecord, str, str]] = field(default_factory=list)
    area: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")

    def __post_init__(self) -> None:
        self.handler = self.handler_with(self.calendar)

    def handler_with(self, calendar: WorkingDayCalendar) -> ComplaintsHandler:
        return ComplaintsHandler(
            store=self.store,
            calendar=calendar,
            policy=Policy(),
            metrics=ComplaintsMetrics(CollectorRegistry()),
            clock=self.clock,
        )

    async def consume_actions(self, records: list[InboundRecord]) -> None:
        """The actions topic's consumer, its dead letters kept here."""

        async def dead_letter(record: InboundRecord, fault: Fault, _: int) -> str:
            self.dead_letters.append((record, fault.describe(), fault.error_type))
            return "recorded"

        consumer = self.handler.action_topic_consumer(
            dead_letter, ConsumerSettings(max_attempts=2, retry_backoff_seconds=0)
        )
        await consumer.consume(records)

    def new_id(self) -> str:
        return f"CMP-{uuid.uuid4().hex[:12]}"

    async def act(self, kind: str, complaint_id: str, day: date, **fields: Any) -> Any:
        if kind == "open":
            fields.setdefault("service_area", self.area)
        return await self.handler.apply(
            action(kind, complaint_id, f"{kind}-{day}-{len(fields)}", london_at(day), **fields)
        )

    async def state(self, complaint_id: str) -> Complaint:
        complaint = await self.handler.get(complaint_id)
        assert complaint is not None
        return complaint

    async def fire_due(self, now: datetime) -> None:
        self.clock.now = now
        if isinstance(self.store, FakeComplaintsStore):
            fake = self.store
            due = fake.due_timers(now)
            await self.handler.fire_timers(fake.connection(), due)
            for timer in due:
                fake.mark_fired(timer.timer_id, now)
            return
        await TimerScheduler(
            self.store.pool,
            SERVICE,
            self.handler.fire_timer,
            fire_batch=self.handler.fire_timers,
        ).fire_due(now)

    async def pending_timers(self, complaint_id: str) -> dict[str, datetime]:
        """One complaint's pending timers: their ids and when they are due."""
        if isinstance(self.store, FakeComplaintsStore):
            pending = self.store.pending_timers().values()
            return {t.timer_id: t.due_at for t in pending if t.subject == complaint_id}
        rows = await self.store.pool.fetch(
            "SELECT timer_id, due_at FROM timers WHERE service = $1 AND subject = $2"
            " AND fired_at IS NULL AND cancelled_at IS NULL",
            SERVICE,
            complaint_id,
        )
        return {row["timer_id"]: row["due_at"] for row in rows}

    async def published(self, complaint_id: str) -> list[str]:
        """Event types in the outbox for one complaint, in order."""
        if isinstance(self.store, FakeComplaintsStore):
            return [e.event_type for e in self.store.outbox if e.complaint_id == complaint_id]
        rows = await self.store.pool.fetch(
            "SELECT value FROM outbox WHERE service = $1 AND key = $2 ORDER BY id",
            SERVICE,
            complaint_id.encode(),
        )
        return [json.loads(row["value"])["event_type"] for row in rows]


@pytest.fixture(scope="module")
async def complaints_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    try:
        await migrate(pool, SERVICE, MIGRATIONS)
        yield pool
    finally:
        await pool.close()


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "fake":
        return Backend("fake", FakeComplaintsStore())
    pool: asyncpg.Pool = request.getfixturevalue("complaints_pool")
    return Backend("postgres", ComplaintsStore(pool))


def test_the_fake_store_overrides_every_public_store_method() -> None:
    public = {name for name in vars(ComplaintsStore) if not name.startswith("_")}

    assert public <= set(vars(FakeComplaintsStore))
    for name in public:
        real, fake = getattr(ComplaintsStore, name), getattr(FakeComplaintsStore, name)
        assert inspect.signature(real) == inspect.signature(fake), name
        assert inspect.iscoroutinefunction(real) == inspect.iscoroutinefunction(fake), name
        assert inspect.isasyncgenfunction(real) == inspect.isasyncgenfunction(fake), name


async def test_an_action_sent_twice_applies_once(backend: Backend) -> None:
    complaint_id = backend.new_id()
    await backend.act("open", complaint_id, date(2026, 1, 5))

    first = await backend.act("acknowledge", complaint_id, date(2026, 1, 6))
    again = await backend.act("acknowledge", complaint_id, date(2026, 1, 6))

    assert isinstance(first, Applied)
    assert isinstance(again, Duplicate)
    assert await backend.published(complaint_id) == ["ComplaintOpened", "ComplaintAcknowledged"]


async def test_a_refused_action_leaves_no_trace_so_the_same_action_applies_later(
    backend: Backend,
) -> None:
    complaint_id = backend.new_id()
    await backend.act("open", complaint_id, date(2026, 1, 5))

    early = await backend.act("respond", complaint_id, date(2026, 1, 7))
    await backend.act("acknowledge", complaint_id, date(2026, 1, 6))
    later = await backend.act("respond", complaint_id, date(2026, 1, 7))

    assert isinstance(early, Refusal)
    assert early.reason is RefusalReason.WRONG_STATE
    assert isinstance(later, Applied)
    assert (await backend.state(complaint_id)).status is Status.RESPONDED


async def test_a_missed_acknowledgement_is_breached_once_however_often_timers_run(
    backend: Backend,
) -> None:
    """Code 4.1 and DOMAIN.md: a deadline that passes without its action emits
    ComplaintDeadlineBreached exactly once per deadline."""
    complaint_id = backend.new_id()
    await backend.act("open", complaint_id, date(2026, 1, 5))  # acknowledge by 12 January

    await backend.fire_due(end_of_local_day(date(2026, 1, 12)))
    await backend.fire_due(end_of_local_day(date(2026, 1, 13)))

    assert await backend.published(complaint_id) == [
        "ComplaintOpened",
        "ComplaintDeadlineBreached",
    ]
    [deadline] = (await backend.state(complaint_id)).deadlines
    assert deadline.breached


async def test_a_late_acknowledgement_processed_before_its_timer_still_breaches(
    backend: Backend,
) -> None:
    """DOMAIN.md, timeliness: on time means the action's local date is on or before the due
    date, whatever the order; a late action processed before its timer fired still breaches."""
    complaint_id = backend.new_id()
    await backend.act("open", complaint_id, date(2026, 1, 5))

    await backend.act("acknowledge", complaint_id, date(2026, 1, 13))  # due the 12th
    await backend.fire_due(end_of_local_day(date(2026, 1, 13)))

    assert await backend.published(complaint_id) == [
        "ComplaintOpened",
        "ComplaintDeadlineBreached",
        "ComplaintAcknowledged",
    ]
    ack = (await backend.state(complaint_id)).deadlines[0]
    assert (ack.breached, ack.met_in_time) == (True, False)


async def test_an_on_time_acknowledgement_arriving_after_the_breach_corrects_it(
    backend: Backend,
) -> None:
    """DOMAIN.md, timeliness: an on-time action that arrives after a breach fired corrects
    it, so that the complaint's view and every KPI agree."""
    complaint_id = backend.new_id()
    await backend.act("open", complaint_id, date(2026, 1, 5))
    await backend.fire_due(end_of_local_day(date(2026, 1, 12)))

    await backend.act("acknowledge", complaint_id, date(2026, 1, 12))

    assert await backend.published(complaint_id) == [
        "ComplaintOpened",
        "ComplaintDeadlineBreached",
        "ComplaintDeadlineBreachCorrected",
        "ComplaintAcknowledged",
    ]
    ack = (await backend.state(complaint_id)).deadlines[0]
    assert (ack.breached, ack.breach_corrected, ack.met_in_time) == (True, True, True)


async def _responded(backend: Backend, complaint_id: str) -> None:
    await backend.act("open", complaint_id, date(2026, 1, 5))
    await backend.act("acknowledge", complaint_id, date(2026, 1, 6))
    await backend.act("respond", complaint_id, date(2026, 1, 14))  # window to 11 February


async def test_a_stage_one_window_that_ends_with_no_request_closes_the_complaint_once(
    backend: Backend,
) -> None:
    """DOMAIN.md: when the window ends with no request, the complaint closes (reason: window
    lapsed); that close triggers its survey and takes it out of the open counts."""
    complaint_id = backend.new_id()
    await _responded(backend, complaint_id)
    area = backend.area
    open_before = await backend.store.worklist(WorklistQuery(today=NOW.date(), service_area=area))

    await backend.fire_due(end_of_local_day(date(2026, 2, 10)))
    still_open = (await backend.state(complaint_id)).status
    await backend.fire_due(end_of_local_day(date(2026, 2, 11)))
    await backend.fire_due(end_of_local_day(date(2026, 2, 20)))

    closed = await backend.state(complaint_id)
    assert still_open is Status.RESPONDED
    assert closed.status is Status.CLOSED
    assert (await backend.published(complaint_id)).count("ComplaintClosed") == 1
    open_now = await backend.store.worklist(WorklistQuery(today=NOW.date(), service_area=area))
    assert [c.complaint_id for c in open_before] == [complaint_id]
    assert open_now == []


async def test_a_case_closed_by_hand_inside_the_window_reopens_on_a_request_inside_it(
    backend: Backend,
) -> None:
    """DOMAIN.md: an officer may close earlier only with a reason, and an escalation asked
    for inside the window still reopens it at stage 2."""
    complaint_id = backend.new_id()
    await _responded(backend, complaint_id)

    without_reason = await backend.act("close", complaint_id, date(2026, 1, 20))
    await backend.act("close", complaint_id, date(2026, 1, 20), reason="customer satisfied")
    reopened = await backend.act("request_escalation", complaint_id, date(2026, 2, 2))
    await backend.fire_due(end_of_local_day(date(2026, 2, 11)))

    assert isinstance(without_reason, Refusal)
    assert without_reason.reason is RefusalReason.REASON_REQUIRED
    assert isinstance(reopened, Applied)
    complaint = await backend.state(complaint_id)
    assert complaint.status is Status.ESCALATION_REQUESTED
    assert (await backend.published(complaint_id)).count("ComplaintClosed") == 1


async def test_a_closure_day_added_moves_running_deadlines_and_the_open_window(
    backend: Backend,
) -> None:
    """DOMAIN.md: when the calendar changes (a closure day added), open deadlines are
    recalculated; issue 11 item 1: the window with them."""
    responded_id, received_id, closed_id = backend.new_id(), backend.new_id(), backend.new_id()
    await _responded(backend, responded_id)
    await _responded(backend, closed_id)
    await backend.act("close", closed_id, date(2026, 1, 15), reason="the customer is content")
    await backend.act("open", received_id, date(2026, 1, 14))  # acknowledge by 21 January
    await backend.handler.recalculate_deadlines()  # the first count is remembered

    closed = backend.handler_with(WorkingDayCalendar([date(2026, 1, 20)]))
    moved = await closed.recalculate_deadlines()

    assert moved >= 3
    assert (await backend.state(responded_id)).escalation_window_ends == date(2026, 2, 12)
    # Closed by hand inside its window: the customer may still escalate, to the new end.
    assert (await backend.state(closed_id)).escalation_window_ends == date(2026, 2, 12)
    [acknowledgement] = (await backend.state(received_id)).deadlines
    assert acknowledgement.due_date == date(2026, 1, 22)
    # The timers moved with them, and no other timer was started or left behind.
    window_ends = end_of_local_day(date(2026, 2, 12))
    for windowed in (responded_id, closed_id):
        timer_id = f"{windowed}/1:escalation_window"
        assert await backend.pending_timers(windowed) == {timer_id: window_ends}
    assert await backend.pending_timers(received_id) == {
        f"{received_id}/{acknowledgement.timer_id}": end_of_local_day(date(2026, 1, 22))
    }


async def test_the_worklist_filters_and_orders_by_next_due_date_a_page_at_a_time(
    backend: Backend,
) -> None:
    """Issue 11 item 7: ordered by next due date, cursor-paginated, with filters."""
    late, soon, later, done = (backend.new_id() for _ in range(4))
    await backend.act("open", late, date(2026, 1, 2))  # acknowledge by 9 January
    await backend.act("open", soon, date(2026, 1, 6))  # by 13 January
    await backend.act("open", later, date(2026, 1, 8))  # by 15 January
    await backend.act("open", done, date(2026, 1, 7))
    await backend.act("close", done, date(2026, 1, 7), reason="about a planning appeal")
    today = date(2026, 1, 12)

    def query(**filters: Any) -> WorklistQuery:
        return WorklistQuery(today=today, service_area=backend.area, **filters)

    first = await backend.store.worklist(query(limit=2))
    last = first[-1]
    rest = await backend.store.worklist(query(after=(last.next_due_date(), last.complaint_id)))
    overdue = await backend.store.worklist(query(overdue=True))
    before = await backend.store.worklist(query(due_before=date(2026, 1, 15)))
    closed = await backend.store.worklist(query(state="closed"))
    everything = await backend.store.worklist(query(state="all"))
    statutory = await backend.store.worklist(query(procedure="adult_social_care"))

    assert [c.complaint_id for c in first + rest] == [late, soon, later]
    assert [c.complaint_id for c in overdue] == [late]
    assert [c.complaint_id for c in before] == [late, soon]
    assert [c.complaint_id for c in closed] == [done]
    assert [c.complaint_id for c in everything] == [late, soon, later, done]
    assert statutory == []


async def test_action_records_apply_in_one_batch_and_refused_ones_are_dead_lettered(
    backend: Backend,
) -> None:
    complaint_id = backend.new_id()
    await backend.act("open", complaint_id, date(2026, 1, 5))
    values = [
        action_bytes("acknowledge", complaint_id, "ack", london_at(date(2026, 1, 6))),
        action_bytes("acknowledge", complaint_id, "ack-again", london_at(date(2026, 1, 6))),
        b'{"action": "nonsense"}',
    ]
    records = [
        InboundRecord(value, complaint_id.encode(), SourcePosition("civicpulse.x", 0, n))
        for n, value in enumerate(values)
    ]

    await backend.consume_actions(records)

    assert (await backend.state(complaint_id)).status is Status.ACKNOWLEDGED
    assert sorted(kind for _, _, kind in backend.dead_letters) == ["invalid_action", "refused"]


async def test_learning_actions_past_due_and_not_done_are_counted_overdue(
    backend: Backend,
) -> None:
    """DOMAIN.md: a learning action has an owner team and a due date and is tracked until
    done; issue 11 item 6: actions overdue are counted."""
    complaint_id, day_after_due = backend.new_id(), date(2026, 1, 31)
    await backend.act("open", complaint_id, date(2026, 1, 5))
    await backend.act("acknowledge", complaint_id, date(2026, 1, 6))
    learning = [
        {"description": "Retrain crews", "owner_team": "ops", "due_date": "2026-01-30"},
        {"description": "Fix the form", "owner_team": "digital", "due_date": "2026-01-30"},
    ]
    # Other tests' complaints may share the database: count from a baseline.
    baseline = await backend.store.learning_actions_overdue(day_after_due)
    await backend.act("respond", complaint_id, date(2026, 1, 14), learning_actions=learning)
    on_the_due_date = await backend.store.learning_actions_overdue(date(2026, 1, 30))
    both_overdue = await backend.store.learning_actions_overdue(day_after_due)

    await backend.act(
        "complete_learning_action", complaint_id, date(2026, 2, 2), learning_action_id="1.2"
    )
    one_overdue = await backend.store.learning_actions_overdue(day_after_due)

    done = (await backend.state(complaint_id)).learning_actions
    assert [a.completed_on for a in done] == [None, date(2026, 2, 2)]
    assert on_the_due_date <= baseline
    assert (both_overdue, one_overdue) == (baseline + 2, baseline + 1)


# -- erasure ------------------------------------------------------------------------


async def outbox_text(backend: Backend) -> str:
    if isinstance(backend.store, FakeComplaintsStore):
        return " ".join(event.model_dump_json() for event in backend.store.outbox)
    rows = await backend.store.pool.fetch(
        "SELECT convert_from(value, 'UTF8') AS value FROM outbox WHERE service = $1", SERVICE
    )
    return " ".join(row["value"] for row in rows)


async def test_erasure_removes_officers_reasons_from_the_customer_s_complaints_only(
    backend: Backend,
) -> None:
    """Issue 12, item 7: free text about a person (complaint reasons) is kept by its owner,
    erasable, and never travels on civicpulse.complaints (kept for ever); the receipt says
    what was changed and which topic copies stay until when."""
    erased, kept = f"CUST-{uuid.uuid4().hex[:10]}", f"CUST-{uuid.uuid4().hex[:10]}"
    theirs, other = backend.new_id(), backend.new_id()
    # Letters only: a hex string can look like an NI number to the redaction.
    word = uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))
    secret = f"tenant {word} is away until March"
    await backend.act("open", theirs, date(2026, 1, 12), customer_ref=erased)
    await backend.act("acknowledge", theirs, date(2026, 1, 13))
    await backend.act("extend", theirs, date(2026, 1, 14), days=5, reason=secret)
    await backend.act("withdraw", theirs, date(2026, 1, 15), reason=f"withdrawn: {secret}")
    await backend.act("open", other, date(2026, 1, 12), customer_ref=kept)
    await backend.act("close", other, date(2026, 1, 13), reason=f"refused: {secret}")
    assert secret in (await backend.state(theirs)).model_dump_json()
    assert secret not in await outbox_text(backend)  # the events never carried it

    receipt = await backend.handler.erase_customer(erased)

    assert secret not in (await backend.state(theirs)).model_dump_json()
    assert (await backend.state(theirs)).status is Status.WITHDRAWN  # the case reads the same
    assert secret in (await backend.state(other)).model_dump_json()
    assert [(d.table, d.rows) for d in receipt.deleted] == [
        ("complaints (officers' free text removed)", 1)
    ]
    remaining = {copy.topic: copy for copy in receipt.remaining}
    assert remaining["civicpulse.complaints"].until is None
    assert remaining["civicpulse.complaints"].personal_data is False
    assert remaining["civicpulse.complaints.actions"].retention == "30 days"
    assert remaining["civicpulse.complaints.actions.dead-letter"].personal_data is True
    again = await backend.handler.erase_customer(erased)
    assert again.deleted[0].rows == 0
    assert (await backend.handler.erase_customer("CUST-NOBODY")).remaining == []
