"""Targets from YAML: numbers or TBA, per KPI and service area, checked at start-up."""

from pathlib import Path

import pytest

from services.metrics.domain import TBA
from services.metrics.settings import DEFAULT_TARGETS_FILE
from services.metrics.targets import TargetsError, load_targets, parse_targets
from shared.settings import DEFAULT_VOCABULARY_FILE
from shared.vocabulary import load_service_areas

AREAS = frozenset({"planning", "waste"})


def test_a_service_area_target_overrides_the_default() -> None:
    targets = parse_targets(
        {"kpis": {"csat": {"default": 0.8, "service_areas": {"planning": 0.9, "waste": "TBA"}}}},
        AREAS,
    )

    assert targets.target("csat", "planning") == 0.9
    assert targets.target("csat", "waste") == TBA
    assert targets.target("csat", None) == 0.8
    assert targets.target("service_level", "planning") is None


def test_an_unknown_kpi_is_refused_with_its_path() -> None:
    with pytest.raises(TargetsError, match=r"kpis\.happiness: unknown KPI"):
        parse_targets({"kpis": {"happiness": {"default": 1}}}, AREAS)


def test_an_unknown_service_area_is_refused() -> None:
    with pytest.raises(TargetsError, match="unknown parking"):
        parse_targets({"kpis": {"csat": {"service_areas": {"parking": 0.5}}}}, AREAS)


@pytest.mark.parametrize("value", ["high", True, [0.8]])
def test_a_target_that_is_neither_a_number_nor_tba_is_refused(value: object) -> None:
    with pytest.raises(TargetsError, match=r"kpis\.csat\.default: expected a number or TBA"):
        parse_targets({"kpis": {"csat": {"default": value}}}, AREAS)


def test_the_shipped_targets_file_is_valid_for_the_shipped_vocabulary() -> None:
    targets = load_targets(DEFAULT_TARGETS_FILE, load_service_areas(DEFAULT_VOCABULARY_FILE))

    assert targets.target("first_contact_resolution", "planning") == 0.75
    assert targets.target("survey_response_rate", "waste") == TBA


def test_an_unreadable_targets_file_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "targets.yaml"
    broken.write_text("kpis: [unclosed")

    with pytest.raises(TargetsError, match="cannot read targets file"):
        load_targets(broken, AREAS)
