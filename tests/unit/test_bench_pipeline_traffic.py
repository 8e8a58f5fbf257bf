"""The pipeline bench's traffic: residents' contact rates, not a few customers' floods."""

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from aiokafka.partitioner import DefaultPartitioner

from bench.pipeline import (
    CONTACTS_A_DAY,
    ROUTE_SHARE,
    Plan,
    build_records,
    daily_contacts,
    with_route,
)


def test_a_step_s_customers_contact_one_to_four_times_in_the_council_s_proportions() -> None:
    """DOMAIN.md: FCR is lost by a re-contact from the same customer about the same
    area within the window, and a customer surveyed within the quiet period is not
    surveyed again, so the share of repeat contacts sets how often both paths run."""
    senders = daily_contacts(40_000, "step")
    per_customer = Counter(Counter(senders).values())
    customers = sum(per_customer.values())

    assert len(senders) == 40_000
    assert set(per_customer) <= {k for k, _ in CONTACTS_A_DAY}
    for times, share in CONTACTS_A_DAY:
        assert abs(per_customer[times] / customers - share) < 0.02, (times, per_customer)
    assert 23_000 < customers < 27_000  # 1.6 contacts each on average
    assert senders != sorted(senders)  # shuffled: repeats spread over the step
    assert daily_contacts(40_000, "step") == senders  # the seed decides


def test_the_route_share_of_customers_have_a_contact_route() -> None:
    customers = range(10_000)
    routed = sum(with_route(n) for n in customers)
    assert routed == int(len(customers) * ROUTE_SHARE)
    assert not all(with_route(n) for n in range(5))  # spread, not the first 80 %


def test_records_built_before_a_step_are_dated_today_and_checkpoints_on_their_days() -> None:
    """The records are serialised before the step: the bulk stays dated today (so feedback
    does its real work), each checkpoint is alone on its own day, in order, and each record
    goes to the partition aiokafka's own partitioner gives its key."""
    plan = Plan(rate=500, seconds=4, first_day=date(2000, 3, 1), customers="t-")
    senders = daily_contacts(plan.records, "build")
    before = datetime.now(UTC)
    records = build_records(plan, senders, [0, 1, 2, 3, 4, 5])

    assert len(records) == plan.records == 2000
    checkpoints = [r for r in records if r.checkpoint is not None]
    assert [r.checkpoint for r in checkpoints] == [
        plan.first_day + timedelta(days=k) for k in range(plan.checkpoints)
    ]
    for outgoing in records:
        body = json.loads(outgoing.value)
        occurred = datetime.fromisoformat(body["occurred_at"])
        if outgoing.checkpoint is None:
            assert before <= occurred <= datetime.now(UTC)
        else:
            assert occurred.date() == outgoing.checkpoint
        assert body["contact_id"] == outgoing.contact_id
        assert outgoing.partition == DefaultPartitioner()(
            outgoing.key, [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]
        )
    assert len({r.partition for r in records}) == 6
