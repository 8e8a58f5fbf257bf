"""Feedback's handlers: who is surveyed, when the request goes, and what an answer does.

Each test runs twice: on the in-memory store (`tests/support/fake_feedback_store.py`)
and, marked `integration`, on PostgreSQL, so the fake cannot drift from the real store.
DOMAIN.md, "Satisfaction": one request after a delay for every resolved enquiry,
service request and complaint (after its final response), unless the customer
opted out, gave no contact route, or was surveyed within the quiet period;
never two for one case.
"""

import asyncio
import inspect
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from services.feedback.customers import CustomerHandler
from services.feedback.handlers import FeedbackHandler, FeedbackMetrics, NotifyTemplates, policy_of
from services.feedback.links import AnswerLinks, LinkError
from services.feedback.notifications import ContactRoute, NotifyMessage
from services.feedback.store import FeedbackStore, SurveyRequest
from shared.events import (
    ComplaintClosed,
    ComplaintClosedPayload,
    CustomerOptedOut,
    SatisfactionExpired,
    SatisfactionRequested,
    SatisfactionResponded,
)
from shared.events.vocabulary import CaseType
from tests.support.fake_feedback_store import (
    FakeFeedbackBackend,
    FakeFeedbackStore,
    FeedbackBackend,
    PostgresFeedbackBackend,
)
from tests.support.feedback import (
    DELAY,
    EXPIRY,
    TOKEN_SECRET,
    TestClock,
    complaint_events,
    contact_resolved,
)

RESOLVED_AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CUSTOMER = "CUST-000123"
ANSWERS = {"overall": "4", "ease": "6", "resolved": "yes", "comment": "Quick, thank you"}


@dataclass
class Harness:
    backend: FeedbackBackend
    clock: TestClock = field(default_factory=lambda: TestClock(RESOLVED_AT + timedelta(hours=1)))
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        metrics = FeedbackMetrics(self.registry)
        links = AnswerLinks(TOKEN_SECRET)
        self.handler = FeedbackHandler(
            self.backend.store,
            policy=policy_of(DELAY.total_seconds() / 3600, EXPIRY.days, 30),
            links=links,
            public_url="http://feedback.test",
            templates=NotifyTemplates(email="email-template", sms="sms-template"),
            metrics=metrics,
            clock=self.clock,
        )
        self.customers = CustomerHandler(
            self.backend.store, links=links, metrics=metrics, clock=self.clock
        )

    async def decision(
        self, case_id: str, case_type: CaseType = CaseType.CONTACT
    ) -> tuple[SurveyRequest | None, list[str]]:
        request, suppressions = await self.customers.case_decisions(case_type, case_id)
        return request, [reason for reason, _ in suppressions]

    async def fire_at(self, moment: datetime) -> int:
        self.clock.now = moment
        return await self.backend.fire_due(self.handler, moment)

    async def events_of(self, kind: type) -> list[object]:
        return [event for event in await self.backend.outbox_events() if isinstance(event, kind)]

    async def only_message(self) -> NotifyMessage:
        [message] = await self.backend.notifications()
        return message

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> FeedbackBackend:
    """Every test here runs against the fake store and against PostgreSQL."""
    if request.param == "fake":
        return FakeFeedbackBackend()
    return PostgresFeedbackBackend(request.getfixturevalue("store_pool"))


@pytest.fixture
async def harness(backend: FeedbackBackend) -> Harness:
    await backend.reset()
    return Harness(backend)


async def with_route(harness: Harness, customer: str = CUSTOMER) -> None:
    await harness.customers.put_contact_route(customer, ContactRoute(email="r@example.org"))


def token_of(message: NotifyMessage) -> str:
    return urlsplit(message.personalisation.survey_link).path.rsplit("/", 1)[1]


async def test_a_resolved_enquiry_is_scheduled_to_be_sent_after_the_delay(harness: Harness) -> None:
    await with_route(harness)

    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])

    request, suppressed = await harness.decision("contact-1")
    assert request is not None
    assert (request.status, request.send_at) == ("scheduled", RESOLVED_AT + DELAY)
    assert suppressed == []
    [timer] = await harness.backend.pending_timers()
    assert (timer.kind, timer.subject, timer.due_at) == (
        "send",
        request.request_id,
        request.send_at,
    )
    assert harness.sample("feedback_requests_scheduled_total") == 1


async def test_a_customer_without_a_contact_route_is_not_surveyed(harness: Harness) -> None:
    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])

    assert await harness.decision("contact-1") == (None, ["no_contact_route"])
    assert await harness.backend.pending_timers() == []


async def test_an_anonymous_contact_is_not_surveyed(harness: Harness) -> None:
    await harness.handler.handle([contact_resolved("contact-1", None, RESOLVED_AT)])

    request, suppressed = await harness.decision("contact-1")
    assert request is None
    assert len(suppressed) == 1


async def test_a_customer_who_opted_out_is_not_surveyed(harness: Harness) -> None:
    await with_route(harness)
    assert await harness.customers.opt_out(CUSTOMER) is True

    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])

    assert await harness.decision("contact-1") == (None, ["opted_out"])


async def test_a_redelivered_resolution_takes_effect_once(harness: Harness) -> None:
    await with_route(harness)
    event = contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)

    await harness.handler.handle([event])
    await harness.handler.handle([event])

    request, suppressed = await harness.decision("contact-1")
    assert request is not None
    assert suppressed == []
    assert len(await harness.backend.pending_timers()) == 1
    assert harness.sample("feedback_requests_scheduled_total") == 1


async def test_a_second_resolution_of_one_case_is_suppressed_as_already_requested(
    harness: Harness,
) -> None:
    await with_route(harness)
    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])

    later = contact_resolved("contact-1", CUSTOMER, RESOLVED_AT + timedelta(hours=2))
    await harness.handler.handle([later])

    request, suppressed = await harness.decision("contact-1")
    assert request is not None
    assert suppressed == ["already_requested"]


async def test_a_second_case_within_the_quiet_period_is_not_surveyed(harness: Harness) -> None:
    await with_route(harness)
    await harness.handler.handle(
        [
            contact_resolved("contact-1", CUSTOMER, RESOLVED_AT),
            contact_resolved("contact-2", CUSTOMER, RESOLVED_AT + timedelta(days=3)),
        ]
    )

    assert (await harness.decision("contact-1"))[0] is not None
    assert await harness.decision("contact-2") == (None, ["quiet_period"])


async def test_the_send_timer_hands_the_message_to_notify_and_publishes_the_request(
    harness: Harness,
) -> None:
    await with_route(harness)
    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])
    sent_at = RESOLVED_AT + DELAY + timedelta(minutes=1)

    assert await harness.fire_at(sent_at) == 1

    request, _ = await harness.decision("contact-1")
    assert request is not None
    assert (request.status, request.expires_at) == ("requested", sent_at + EXPIRY)
    message = await harness.only_message()
    assert (message.reference, message.email_address) == (request.request_id, "r@example.org")
    assert message.personalisation.survey_link.startswith("http://feedback.test/surveys/")
    [published] = await harness.events_of(SatisfactionRequested)
    assert isinstance(published, SatisfactionRequested)
    assert published.payload.customer_ref == CUSTOMER
    [expiry] = await harness.backend.pending_timers()
    assert (expiry.kind, expiry.due_at) == ("expire", sent_at + EXPIRY)


async def test_a_customer_erased_before_the_send_gets_no_message(harness: Harness) -> None:
    await with_route(harness)
    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])
    assert (await harness.customers.erase_customer(CUSTOMER)).erased_rows == 1

    await harness.fire_at(RESOLVED_AT + DELAY)

    request, _ = await harness.decision("contact-1")
    assert request is not None
    assert (request.status, request.cancel_reason) == ("cancelled", "no_contact_route")
    assert await harness.backend.notifications() == []
    assert await harness.events_of(SatisfactionRequested) == []


async def test_erasure_also_deletes_a_message_not_yet_relayed(harness: Harness) -> None:
    await with_route(harness)
    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])
    await harness.fire_at(RESOLVED_AT + DELAY)

    receipt = await harness.customers.erase_customer(CUSTOMER)

    assert {d.table: d.rows for d in receipt.deleted} == {
        "feedback_contact_routes": 1,
        "feedback_comments": 0,
        "outbox (unsent notifications)": 1,
    }
    assert receipt.erased_rows == 2

    assert await harness.backend.notifications() == []


async def test_an_unanswered_request_expires_once(harness: Harness) -> None:
    await with_route(harness)
    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])
    await harness.fire_at(RESOLVED_AT + DELAY)

    assert await harness.fire_at(RESOLVED_AT + DELAY + EXPIRY) == 1
    assert await harness.fire_at(RESOLVED_AT + DELAY + 2 * EXPIRY) == 0

    request, _ = await harness.decision("contact-1")
    assert request is not None
    assert request.status == "expired"
    assert len(await harness.events_of(SatisfactionExpired)) == 1


async def test_an_answer_is_recorded_once_and_stops_the_expiry(harness: Harness) -> None:
    await with_route(harness)
    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])
    await harness.fire_at(RESOLVED_AT + DELAY)
    token = token_of(await harness.only_message())

    answered = await harness.customers.answer(token, ANSWERS)
    with pytest.raises(LinkError) as again:
        await harness.customers.answer(token, ANSWERS)

    assert again.value.code == "already_answered"
    [responded] = await harness.events_of(SatisfactionResponded)
    assert isinstance(responded, SatisfactionResponded)
    assert (responded.request_id, responded.payload.overall) == (answered.request_id, 4)
    assert await harness.backend.pending_timers() == []


async def test_a_comment_stays_in_feedback_and_the_event_carries_its_reference(
    harness: Harness,
) -> None:
    """Issue 12, item 7: free text no longer travels on topics kept for ever; it is kept by
    its owner, erasable, and the event carries a reference (SatisfactionResponded v2)."""
    await with_route(harness)
    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])
    await harness.fire_at(RESOLVED_AT + DELAY)
    token = token_of(await harness.only_message())

    comment = "Bins at 12 Acacia Avenue, SW1A 1AA, missed again"
    answered = await harness.customers.answer(token, {**ANSWERS, "comment": comment})

    [responded] = await harness.events_of(SatisfactionResponded)
    assert isinstance(responded, SatisfactionResponded)
    assert responded.payload.comment_ref == answered.request_id
    assert "Bins" not in responded.model_dump_json()
    kept = await harness.customers.survey_comment(answered.request_id)
    assert kept is not None
    assert kept.comment == "Bins at [removed], ********, missed again"
    assert [c.request_id for c in await harness.customers.latest_comments(5, None)] == [
        answered.request_id
    ]


async def test_erasure_deletes_the_comment_and_dates_the_copies_left_on_topics(
    harness: Harness,
) -> None:
    """Issue 12, item 7: the receipt says what was deleted and which topic copies remain
    until which date by retention (notifications 30 days, dead letters 90, plus one
    7-day segment roll), and that the copy kept for ever holds no personal data."""
    await with_route(harness)
    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])
    await harness.fire_at(RESOLVED_AT + DELAY)
    answered = await harness.customers.answer(
        token_of(await harness.only_message()), {**ANSWERS, "comment": "Took three weeks"}
    )
    erased_at = harness.clock()

    receipt = await harness.customers.erase_customer(CUSTOMER)

    assert await harness.customers.survey_comment(answered.request_id) is None
    assert {d.table: d.rows for d in receipt.deleted} == {
        "feedback_contact_routes": 1,
        "feedback_comments": 1,
        "outbox (unsent notifications)": 1,  # the survey message, not relayed in this test
    }
    remaining = {copy.topic: copy for copy in receipt.remaining}
    assert set(remaining) == {
        "civicpulse.notifications",
        "civicpulse.notifications.dead-letter",
        "civicpulse.feedback",
    }
    assert remaining["civicpulse.notifications"].until == RESOLVED_AT + DELAY + timedelta(
        days=30 + 7
    )
    assert remaining["civicpulse.notifications.dead-letter"].until == erased_at + timedelta(
        days=90 + 7
    )
    kept_for_ever = remaining["civicpulse.feedback"]
    assert (kept_for_ever.retention, kept_for_ever.until) == ("forever", None)
    assert kept_for_ever.personal_data is False
    assert all(remaining[t].personal_data for t in remaining if t != "civicpulse.feedback")


async def test_erasing_an_unknown_customer_deletes_nothing_and_leaves_no_copies(
    harness: Harness,
) -> None:
    receipt = await harness.customers.erase_customer("CUST-NEVER-SEEN")

    assert receipt.erased_rows == 0
    assert receipt.remaining == []


async def test_a_link_past_its_expiry_is_refused(harness: Harness) -> None:
    await with_route(harness)
    await harness.handler.handle([contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])
    await harness.fire_at(RESOLVED_AT + DELAY)
    token = token_of(await harness.only_message())
    harness.clock.advance(EXPIRY + timedelta(minutes=1))

    with pytest.raises(LinkError) as refused:
        await harness.customers.answer(token, ANSWERS)

    assert refused.value.code == "expired"
    assert await harness.events_of(SatisfactionResponded) == []


async def test_opting_out_publishes_customer_opted_out_once(harness: Harness) -> None:
    assert await harness.customers.opt_out(CUSTOMER) is True
    assert await harness.customers.opt_out(CUSTOMER) is False

    [opted_out] = await harness.events_of(CustomerOptedOut)
    assert isinstance(opted_out, CustomerOptedOut)
    assert opted_out.customer_ref == CUSTOMER


async def test_a_complaint_is_surveyed_once_after_its_final_response(harness: Harness) -> None:
    """The Code: two stages; the survey follows the stage 2 response, not stage 1's."""
    await with_route(harness)
    opened, stage_one, stage_two, closed = complaint_events("cmp-1", CUSTOMER, None, RESOLVED_AT)

    await harness.handler.handle([opened, stage_one])
    assert await harness.decision("cmp-1", CaseType.COMPLAINT) == (None, [])

    await harness.handler.handle([stage_two, closed])
    request, suppressed = await harness.decision("cmp-1", CaseType.COMPLAINT)
    assert request is not None
    assert request.resolved_at == stage_two.occurred_at
    assert suppressed == ["already_requested"]


async def test_a_complaint_from_a_surveyed_contact_is_covered_by_that_survey(
    harness: Harness,
) -> None:
    await with_route(harness)
    opened, _, stage_two, _ = complaint_events("cmp-1", CUSTOMER, "contact-1", RESOLVED_AT)
    await harness.handler.handle([opened, contact_resolved("contact-1", CUSTOMER, RESOLVED_AT)])

    await harness.handler.handle([stage_two])

    assert (await harness.decision("contact-1"))[0] is not None
    assert await harness.decision("cmp-1", CaseType.COMPLAINT) == (None, ["already_requested"])


async def test_the_close_of_an_unknown_complaint_is_suppressed(harness: Harness) -> None:
    closed = ComplaintClosed(
        complaint_id="cmp-unknown",
        occurred_at=RESOLVED_AT,
        source="civicpulse-complaints",
        payload=ComplaintClosedPayload(service_area="waste", final_stage=2),
    )

    await harness.handler.handle([closed])

    assert await harness.decision("cmp-unknown", CaseType.COMPLAINT) == (None, ["unknown_case"])


# Keep the fake honest: it must offer exactly the store's interface.
def test_the_fake_store_overrides_every_public_store_method() -> None:
    # The store's own methods and those it takes from its mixin (comments_store.py).
    public = {
        name
        for cls in FeedbackStore.__mro__
        if cls is not object
        for name in vars(cls)
        if not name.startswith("_")
    }

    assert public <= set(vars(FakeFeedbackStore))
    for name in public:
        real, fake = getattr(FeedbackStore, name), getattr(FakeFeedbackStore, name)
        assert inspect.iscoroutinefunction(real) == inspect.iscoroutinefunction(fake), name
        assert list(inspect.signature(real).parameters) == list(
            inspect.signature(fake).parameters
        ), name


@pytest.mark.integration
async def test_two_replicas_deciding_about_the_same_customers_in_opposite_orders_do_not_deadlock(
    store_pool: asyncpg.Pool,
) -> None:
    """DOMAIN.md, "Satisfaction": never two requests for one customer's cases within the
    quiet period, with two replicas of the service consuming one topic between them.

    Each decision locks its customer for the batch's transaction; two replicas whose
    batches name the same customers in opposite orders used to deadlock, and one
    batch then fell back to record-by-record retries. Each batch now takes its
    customers' locks up front, in one order.
    """
    backend = PostgresFeedbackBackend(store_pool)
    await backend.reset()
    replicas = [Harness(backend), Harness(backend)]
    customers = [f"CUST-{n:06d}" for n in range(40)]
    for customer in customers:
        await with_route(replicas[0], customer)
    forward = [contact_resolved(f"a-{customer}", customer, RESOLVED_AT) for customer in customers]
    backward = [
        contact_resolved(f"b-{customer}", customer, RESOLVED_AT) for customer in reversed(customers)
    ]

    await asyncio.gather(replicas[0].handler.handle(forward), replicas[1].handler.handle(backward))

    requests = await store_pool.fetch("SELECT customer_ref FROM feedback_requests")
    assert sorted(row["customer_ref"] for row in requests) == customers
