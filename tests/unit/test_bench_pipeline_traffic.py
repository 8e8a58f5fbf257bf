"""The pipeline bench's traffic: residents' contact rates, not a few customers' floods."""

import json
from collections import Counter
from datetime import UTC, datetime

from aiokafka.partitioner import DefaultPartitioner

from bench.pipeline import (
    CONTACTS_A_DAY,
    ROUTE_SHARE,
    Plan,
    Step,
    build_records,
    daily_contacts,
    with_route,
)
from bench.support import Percentiles


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


def test_records_built_before_a_step_are_all_dated_today_checkpoints_too() -> None:
    """Issue 15: "Records are dated today, so feedback does its real work" (a checkpoint
    dated in 2000 was skipped as stale); at least 1,000 checkpoints a step, spread evenly,
    each its own contact id; each record goes to the partition aiokafka's own partitioner
    gives its key."""
    plan = Plan(rate=500, seconds=4, customers="t-")
    senders = daily_contacts(plan.records, "build")
    before = datetime.now(UTC)
    records = build_records(plan, senders, [0, 1, 2, 3, 4, 5])

    assert len(records) == plan.records == 2000
    checkpoints = [n for n, r in enumerate(records) if r.checkpoint]
    assert len(checkpoints) == plan.checkpoints == 1000
    assert checkpoints == list(range(0, 2000, 2))
    assert len({r.contact_id for r in records}) == 2000
    for outgoing in records:
        body = json.loads(outgoing.value)
        assert before <= datetime.fromisoformat(body["occurred_at"]) <= datetime.now(UTC)
        assert body["contact_id"] == outgoing.contact_id
        assert outgoing.partition == DefaultPartitioner()(
            outgoing.key, [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]
        )
    assert len({r.partition for r in records}) == 6


def step(counted: int, never_seen: int = 0, p99_ms: float = 500.0) -> Step:
    latency = Percentiles(count=1000, p50_ms=100.0, p95_ms=p99_ms, p99_ms=p99_ms, max_ms=p99_ms)
    return Step(
        rate=1000,
        records=20_000,
        counted=counted,
        checkpoints=1000,
        never_seen=never_seen,
        achieved=990.0,
        latency=latency,
        poll_sweep=latency,
    )


def test_a_step_is_complete_only_when_the_kpis_count_exactly_what_was_sent() -> None:
    """Issue 15: a step passes only if every checkpoint is seen counted, and nothing is
    lost or doubled: one record fewer, or one more (counted twice), fails it."""
    assert step(20_000).complete
    assert step(20_000).sustained
    assert not step(19_999).complete
    assert not step(20_001).complete
    assert not step(20_001).sustained
    assert not step(20_000, never_seen=1).complete
    assert step(20_000, p99_ms=999.0).sustained
    assert not step(20_000, p99_ms=1000.0).sustained
