"""The council simulator's plan: realistic in shape, valid at every interface."""

from collections import Counter
from datetime import UTC, date, datetime

import pytest

from civicpulse.simulation.plan import SCENARIOS, CouncilSimulation, Outgoing, Route
from services.complaints.actions import ACTION_ADAPTER
from services.intake.domain import Accepted, Vocabulary, read_record
from shared.settings import DEFAULT_VOCABULARY_FILE
from shared.vocabulary import load_service_areas

JANUARY = date(2026, 1, 1)
AFTER_JANUARY = datetime(2026, 2, 15, tzinfo=UTC)


def january(scenario: str = "normal", seed: int = 7) -> list[Outgoing]:
    simulation = CouncilSimulation(
        SCENARIOS[scenario], JANUARY, 31, households=30_000, seed=seed, not_after=AFTER_JANUARY
    )
    return simulation.plan()


@pytest.fixture(scope="module")
def normal() -> list[Outgoing]:
    return january()


def received(plan: list[Outgoing]) -> list[Outgoing]:
    return [item for item in plan if item.body.get("record_type") == "contact_received"]


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert january(seed=3) == january(seed=3)
    assert january(seed=3) != january(seed=4)


def test_about_half_of_contacts_are_calls_and_about_half_of_calls_are_for_planning(
    normal: list[Outgoing],
) -> None:
    contacts = received(normal)
    calls = [c for c in contacts if c.body["channel"] == "phone"]

    assert 0.4 < len(calls) / len(contacts) < 0.6
    assert 0.4 < sum(c.body["service_area"] == "planning" for c in calls) / len(calls) < 0.6


def test_planning_calls_are_mostly_transferred_twice(normal: list[Outgoing]) -> None:
    planning_calls = [
        c.body
        for c in received(normal)
        if c.body["channel"] == "phone" and c.body["service_area"] == "planning"
    ]

    twice = sum(call["transfers"] == 2 for call in planning_calls)
    assert twice / len(planning_calls) > 0.6


def test_weekdays_are_far_busier_than_sundays(normal: list[Outgoing]) -> None:
    by_weekday = Counter(item.at.weekday() for item in received(normal))

    assert by_weekday[2] > 5 * by_weekday[6]


def test_snow_brings_hundreds_more_stage_one_refuse_complaints() -> None:
    def refuse_complaints(plan: list[Outgoing]) -> int:
        return sum(
            c.body["kind"] == "complaint" and c.body["service_area"] == "waste"
            for c in received(plan)
        )

    extra = refuse_complaints(january("snow")) - refuse_complaints(january("normal"))

    assert 250 < extra < 500


def test_every_contact_record_is_one_intake_accepts(normal: list[Outgoing]) -> None:
    vocabulary = Vocabulary(load_service_areas(DEFAULT_VOCABULARY_FILE))
    records = [item for item in normal if item.route is not Route.CASE_ACTION]

    outcomes = [
        read_record(item.body, vocabulary, authenticated_source=None, recorded_at=AFTER_JANUARY)
        for item in records
    ]

    refused = [outcome for outcome in outcomes if not isinstance(outcome, Accepted)]
    assert refused == []


def test_every_case_action_is_one_the_complaints_service_reads(normal: list[Outgoing]) -> None:
    actions = [item.body for item in normal if item.route is Route.CASE_ACTION]

    parsed = [ACTION_ADAPTER.validate_python(action) for action in actions]

    assert {action.action for action in parsed} >= {"acknowledge", "respond", "close"}
    assert any(action.action == "request_escalation" for action in parsed)


def test_a_complaints_actions_come_in_lifecycle_order_after_its_contact(
    normal: list[Outgoing],
) -> None:
    order: dict[str, list[str]] = {}
    for item in normal:
        if item.route is Route.CASE_ACTION:
            order.setdefault(item.body["complaint_id"], []).append(item.body["action"])
    sequences = list(order.values())

    # A lifecycle may be cut short by the end of the simulation: compare prefixes.
    stage_two = ["acknowledge", "respond", "request_escalation", "acknowledge", "respond"]
    assert sequences
    for actions in sequences:
        if actions == ["withdraw"]:
            continue
        steps = [a for a in actions if a not in ("close", "refer_to_ombudsman")]
        assert steps == stage_two[: len(steps)], actions
        assert "close" not in actions[:-1]


def test_nothing_is_planned_after_the_cut_off() -> None:
    cut_off = datetime(2026, 1, 10, 12, tzinfo=UTC)
    plan = CouncilSimulation(SCENARIOS["normal"], JANUARY, 31, seed=1, not_after=cut_off).plan()

    assert plan
    assert max(item.at for item in plan) <= cut_off
