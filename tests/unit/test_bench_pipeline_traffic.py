"""The pipeline bench's traffic: residents' contact rates, not a few customers' floods."""

from collections import Counter

from bench.pipeline import CONTACTS_A_DAY, ROUTE_SHARE, daily_contacts, with_route


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
