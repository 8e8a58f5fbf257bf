"""Every KPI formula, RAG with TBA targets, direction of travel, committee grouping, surges."""

import pytest

from services.metrics.domain import (
    KPIS,
    KPIS_BY_NAME,
    TBA,
    Figure,
    Kpi,
    Rag,
    Standing,
    SurgeRule,
    Target,
    Trend,
    baseline,
    change,
    check_surge,
    evaluate,
    rag_status,
    standing,
)

# (KPI, the measures over a period, expected value, numerator, denominator)
FORMULAS: list[tuple[str, dict[str, float], float, float, float | None]] = [
    (
        "first_contact_resolution",
        {"fcr_first_time": 8, "fcr_lost": 2, "fcr_eligible": 10},
        0.6,
        6,
        10,
    ),
    (
        "answered_first_time_by_right_team",
        {"calls_answered": 20, "calls_transferred": 5},
        0.75,
        15,
        20,
    ),
    ("transfer_rate", {"calls_answered": 20, "calls_transferred": 5}, 0.25, 5, 20),
    ("average_transfers_per_call", {"calls_answered": 20, "call_transfers": 9}, 0.45, 9, 20),
    ("abandoned_call_rate", {"calls_answered": 30, "calls_abandoned": 10}, 0.25, 10, 40),
    (
        "average_speed_of_answer",
        {"call_wait_seconds": 300, "calls_answered_waited": 12},
        25,
        300,
        12,
    ),
    (
        "service_level",
        {"calls_within_service_level": 24, "calls_answered": 30, "calls_abandoned": 10},
        0.6,
        24,
        40,
    ),
    ("contacts_received", {"contacts_received": 42}, 42, 42, None),
    ("compliments_received", {"compliments_received": 3}, 3, 3, None),
    (
        "complaints_received_stage_1",
        {"corporate_complaints_received_s1": 7, "statutory_complaints_received_s1": 4},
        7,
        7,
        None,
    ),
    ("complaints_received_stage_2", {"corporate_complaints_received_s2": 2}, 2, 2, None),
    (
        "complaints_acknowledged_within_target",
        {
            "corporate_ack_on_time_s1": 8,
            "corporate_ack_due_s1": 10,
            "corporate_ack_on_time_s2": 1,
            "corporate_ack_due_s2": 2,
        },
        0.75,
        9,
        12,
    ),
    (
        "complaints_responded_within_target",
        {
            "corporate_response_on_time_s1": 3,
            "corporate_response_due_s1": 4,
            "statutory_response_due_s1": 9,
        },
        0.75,
        3,
        4,
    ),
    (
        "complaint_escalation_rate",
        {"corporate_complaints_received_s1": 20, "corporate_complaints_received_s2": 3},
        0.15,
        3,
        20,
    ),
    ("complaints_upheld", {"corporate_responded_upheld": 1, "corporate_responded": 4}, 0.25, 1, 4),
    (
        "complaints_partly_upheld",
        {"corporate_responded_partly_upheld": 2, "corporate_responded": 4},
        0.5,
        2,
        4,
    ),
    (
        "complaints_not_upheld",
        {"corporate_responded_not_upheld": 1, "corporate_responded": 4},
        0.25,
        1,
        4,
    ),
    (
        "complaint_deadline_breaches",
        {"corporate_deadline_breaches": 5, "statutory_deadline_breaches": 1},
        5,
        5,
        None,
    ),
    # Counted corporate and statutory apart (DOMAIN.md, complaints).
    (
        "ombudsman_referrals",
        {"corporate_ombudsman_referrals": 2, "statutory_ombudsman_referrals": 1},
        2,
        2,
        None,
    ),
    (
        "statutory_ombudsman_referrals",
        {"corporate_ombudsman_referrals": 2, "statutory_ombudsman_referrals": 1},
        1,
        1,
        None,
    ),
    ("statutory_complaints_received", {"statutory_complaints_received_s1": 4}, 4, 4, None),
    ("csat", {"surveys_satisfied": 30, "surveys_responded": 40}, 0.75, 30, 40),
    ("average_ease", {"survey_ease_total": 220, "surveys_responded": 40}, 5.5, 220, 40),
    ("survey_response_rate", {"surveys_responded": 40, "surveys_requested": 160}, 0.25, 40, 160),
    ("mystery_shop_score", {"mystery_score_total": 170, "mystery_shops": 2}, 85, 170, 2),
]


@pytest.mark.parametrize(
    ("name", "measures", "value", "numerator", "denominator"),
    FORMULAS,
    ids=[f[0] for f in FORMULAS],
)
def test_each_kpi_is_its_numerator_over_its_denominator(
    name: str,
    measures: dict[str, float],
    value: float,
    numerator: float,
    denominator: float | None,
) -> None:
    figure = evaluate(KPIS_BY_NAME[name], measures)

    assert figure.value == pytest.approx(value)
    assert (figure.numerator, figure.denominator) == (numerator, denominator)


def test_every_kpi_has_a_formula_test() -> None:
    assert {f[0] for f in FORMULAS} == {kpi.name for kpi in KPIS}


@pytest.mark.parametrize(
    "kpi", [k for k in KPIS if k.denominator is not None], ids=lambda kpi: kpi.name
)
def test_a_ratio_with_an_empty_denominator_has_no_value_rather_than_zero(kpi: Kpi) -> None:
    figure = evaluate(kpi, {})

    assert figure.value is None
    assert figure.denominator == 0


@pytest.mark.parametrize("kpi", [k for k in KPIS if k.denominator is None], ids=lambda k: k.name)
def test_a_count_with_no_events_is_zero(kpi: Kpi) -> None:
    assert evaluate(kpi, {}).value == 0


def test_a_numerator_without_denominator_events_still_has_no_value() -> None:
    assert evaluate(KPIS_BY_NAME["csat"], {"surveys_satisfied": 3}).value is None


FCR = KPIS_BY_NAME["first_contact_resolution"]
ASA = KPIS_BY_NAME["average_speed_of_answer"]
UPHELD = KPIS_BY_NAME["complaints_upheld"]


def rag(kpi_name: str, value: float | None, target: Target, sample: float = 100) -> Rag | None:
    return rag_status(
        KPIS_BY_NAME[kpi_name],
        Figure(value, (value or 0) * sample, sample),
        target,
        amber_tolerance=0.05,
        minimum_sample=30,
    )


def test_meeting_a_higher_is_better_target_is_green() -> None:
    assert rag("first_contact_resolution", 0.80, 0.80) is Rag.GREEN


def test_missing_by_no_more_than_the_tolerance_of_the_target_is_amber() -> None:
    assert rag("first_contact_resolution", 0.76, 0.80) is Rag.AMBER  # 0.04 ≤ 5% of 0.80


def test_missing_by_more_than_the_tolerance_is_red() -> None:
    assert rag("first_contact_resolution", 0.75, 0.80) is Rag.RED


def test_lower_is_better_kpis_turn_red_above_their_target() -> None:
    assert rag("average_speed_of_answer", 50, 60) is Rag.GREEN
    assert rag("average_speed_of_answer", 62, 60) is Rag.AMBER
    assert rag("average_speed_of_answer", 70, 60) is Rag.RED


def test_a_tba_target_shows_no_rag() -> None:
    assert rag("csat", 0.5, TBA) is None


def test_no_target_shows_no_rag() -> None:
    assert rag("csat", 0.5, None) is None


def test_a_kpi_without_a_direction_has_no_rag_even_with_a_target() -> None:
    assert rag("complaints_upheld", 0.5, 0.3) is None


def test_fewer_observations_than_the_minimum_sample_is_insufficient_data() -> None:
    assert rag("csat", 0.1, 0.8, sample=29) is Rag.INSUFFICIENT_DATA


def test_no_data_against_a_target_is_insufficient_data_not_red() -> None:
    figure = evaluate(KPIS_BY_NAME["csat"], {})

    status = rag_status(KPIS_BY_NAME["csat"], figure, 0.8, amber_tolerance=0.05, minimum_sample=0)

    assert status is Rag.INSUFFICIENT_DATA


def test_a_rise_in_a_higher_is_better_kpi_is_improving() -> None:
    moved = change(FCR, 0.8, 0.7)

    assert moved.trend is Trend.IMPROVING
    assert moved.absolute == pytest.approx(0.1)
    assert moved.relative == pytest.approx(0.1 / 0.7)


def test_a_rise_in_a_lower_is_better_kpi_is_worsening() -> None:
    assert change(ASA, 30, 20).trend is Trend.WORSENING


def test_a_kpi_without_direction_goes_up_or_down() -> None:
    assert change(UPHELD, 0.3, 0.2).trend is Trend.UP
    assert change(UPHELD, 0.2, 0.2).trend is Trend.UNCHANGED


def test_change_against_a_period_without_data_is_unknown() -> None:
    moved = change(FCR, 0.8, None)

    assert (moved.absolute, moved.relative, moved.trend) == (None, None, None)


def test_change_from_zero_has_no_relative_change() -> None:
    moved = change(KPIS_BY_NAME["contacts_received"], 5, 0)

    assert moved.absolute == 5
    assert moved.relative is None


def test_complaints_up_from_100_to_105_is_plus_five_percent() -> None:
    moved = change(KPIS_BY_NAME["complaints_received_stage_1"], 105, 100)

    assert moved.relative == pytest.approx(0.05)


def test_any_red_puts_a_service_in_further_work_required() -> None:
    assert standing([Rag.GREEN, Rag.RED, Rag.AMBER]) is Standing.FURTHER_WORK_REQUIRED


def test_amber_without_red_is_at_risk() -> None:
    assert standing([Rag.GREEN, Rag.AMBER, None]) is Standing.AT_RISK


def test_all_green_is_performing_well() -> None:
    assert standing([Rag.GREEN, None, Rag.INSUFFICIENT_DATA]) is Standing.PERFORMING_WELL


def test_no_colour_at_all_is_not_rated() -> None:
    assert standing([None, Rag.INSUFFICIENT_DATA]) is Standing.NOT_RATED


RULE = SurgeRule(window_days=28, k=3.0, ratio=2.0, minimum=20)


def test_a_quiet_area_surges_only_above_the_minimum_count() -> None:
    quiet = [0.0] * 28

    assert not check_surge(20, quiet, RULE).surging
    assert check_surge(21, quiet, RULE).surging


def test_a_steady_area_surges_at_twice_its_mean() -> None:
    steady = [50.0] * 28  # no spread: mean + 3 sd = 50, twice the mean = 100

    check = check_surge(101, steady, RULE)

    assert check.baseline == 50
    assert check.threshold == 100
    assert check.surging


def test_a_volatile_area_needs_three_standard_deviations() -> None:
    volatile = [20.0, 80.0] * 14  # mean 50, sd 30: threshold 140

    assert check_surge(140, volatile, RULE).threshold == pytest.approx(140)
    assert not check_surge(139, volatile, RULE).surging


def test_a_surge_check_needs_the_whole_baseline_window() -> None:
    with pytest.raises(ValueError, match="28 days"):
        check_surge(10, [1.0] * 27, RULE)


def test_surge_days_in_the_baseline_count_as_ordinary_days() -> None:
    window = [(2.0, False)] * 25 + [(40.0, True), (38.0, True), (41.0, True)]

    assert baseline(window) == [2.0] * 28


def test_a_sustained_surge_still_surges_on_its_fourth_day() -> None:
    # The snowy January: refuse complaints at ~38 a day for days on end.
    three_surge_days = [(2.0, False)] * 25 + [(38.0, True)] * 3
    counted_raw = [count for count, _ in three_surge_days]

    assert not check_surge(38, counted_raw, RULE).surging  # the surge became its own baseline
    assert check_surge(38, baseline(three_surge_days), RULE).surging


def test_a_baseline_of_surges_only_is_zero() -> None:
    assert baseline([(30.0, True)] * 3) == [0.0, 0.0, 0.0]
