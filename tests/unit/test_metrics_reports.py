"""KPI rows and the committee view, as JSON-ready rows, CSV and printable HTML."""

import csv
import io
import json
import subprocess
import sys
from datetime import date

from services.metrics.committee import to_csv
from services.metrics.domain import Rag, Standing, Trend
from services.metrics.periods import DateRange, parse_quarter
from services.metrics.report import Judging, committee, kpi_rows
from services.metrics.settings import MetricsSettings
from services.metrics.targets import parse_targets
from shared.api_keys import hash_api_key

AREAS = frozenset({"planning", "waste", "licensing"})
JUDGING = Judging(
    targets=parse_targets(
        {
            "kpis": {
                "first_contact_resolution": {"default": 0.8},
                "abandoned_call_rate": {"default": 0.1, "service_areas": {"licensing": "TBA"}},
            }
        },
        AREAS,
    ),
    amber_tolerance=0.05,
    minimum_sample=10,
    fcr_window_days=7,
)
Q3 = parse_quarter("2026Q3")


def fcr(first_time: float, eligible: float) -> dict[str, float]:
    return {"fcr_first_time": first_time, "fcr_eligible": eligible}


def test_kpi_rows_carry_target_rag_and_change_against_the_previous_period() -> None:
    rows = kpi_rows(
        fcr(85, 100),
        fcr(70, 100),
        span=Q3,
        service_area="planning",
        today=date(2026, 11, 23),
        judging=JUDGING,
    )
    row = next(r for r in rows if r.kpi == "first_contact_resolution")

    assert (row.value, row.target, row.rag) == (0.85, 0.8, Rag.GREEN)
    assert row.previous_value == 0.7
    assert row.trend is Trend.IMPROVING
    assert row.provisional is False


def test_fcr_is_provisional_until_the_window_after_the_last_day_has_passed() -> None:
    def provisional(today: date) -> bool:
        rows = kpi_rows(
            fcr(1, 2),
            {},
            span=Q3,
            service_area=None,
            today=today,
            judging=JUDGING,
        )
        return next(r for r in rows if r.kpi == "first_contact_resolution").provisional

    assert provisional(date(2026, 10, 7))  # 30 September + 7 days
    assert not provisional(date(2026, 10, 8))


def test_committee_groups_each_area_by_its_worst_colour() -> None:
    current: dict[str, dict[str, float]] = {
        "planning": fcr(85, 100),  # green
        "waste": {**fcr(50, 100), "calls_answered": 95, "calls_abandoned": 5},  # red FCR
        "licensing": {"calls_answered": 50, "calls_abandoned": 50},  # TBA: no colour
    }

    groups = committee(current, {}, AREAS, span=Q3, today=date(2026, 11, 23), judging=JUDGING)

    assert [s.service_area for s in groups[Standing.PERFORMING_WELL]] == ["planning"]
    assert [s.service_area for s in groups[Standing.FURTHER_WORK_REQUIRED]] == ["waste"]
    assert [s.service_area for s in groups[Standing.NOT_RATED]] == ["licensing"]
    assert groups[Standing.AT_RISK] == []


def test_committee_csv_has_a_row_per_area_and_kpi_and_blank_for_no_data() -> None:
    groups = committee(
        {"planning": fcr(85, 100)},
        {},
        {"planning"},
        span=Q3,
        today=date(2026, 11, 23),
        judging=JUDGING,
    )

    rows = list(csv.DictReader(io.StringIO(to_csv(groups))))

    fcr_row = next(r for r in rows if r["kpi"] == "first_contact_resolution")
    csat_row = next(r for r in rows if r["kpi"] == "csat")
    assert fcr_row["standing"] == "performing_well"
    assert (fcr_row["value"], fcr_row["rag"]) == ("0.85", "green")
    assert csat_row["value"] == ""


def test_the_command_line_makes_a_token_whose_hash_the_settings_accept() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.metrics", "new-api-token", "finance", "manager"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    token = result.stdout.splitlines()[0].rsplit(": ", 1)[1]
    entry = json.loads(result.stdout.splitlines()[1].split(": ", 1)[1])

    settings = MetricsSettings.model_validate({"metrics_api_tokens": entry})

    assert settings.metrics_api_tokens["finance"].hash == hash_api_key(token)


def test_the_command_line_describes_serve_rebuild_and_new_api_token() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.metrics", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    for command in ("serve", "rebuild", "new-api-token"):
        assert command in result.stdout


def test_a_span_of_days_is_compared_with_as_many_days_before() -> None:
    span = DateRange(date(2026, 7, 1), date(2026, 7, 10))

    rows = kpi_rows(
        {"contacts_received": 110},
        {"contacts_received": 100},
        span=span,
        service_area=None,
        today=date(2026, 11, 23),
        judging=JUDGING,
    )

    contacts = next(r for r in rows if r.kpi == "contacts_received")
    assert contacts.change_percent is not None
    assert round(contacts.change_percent, 6) == 10.0
    assert contacts.trend is Trend.UP
