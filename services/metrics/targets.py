"""KPI targets per service area, from a YAML file.

    kpis:
      first_contact_resolution:
        default: 0.8           # every service area unless named below
        service_areas:
          planning: TBA        # shows the value and no RAG status
          waste: 0.85

Ratios are fractions (0.8 is 80%), seconds are seconds. Unknown KPIs, unknown
service areas and values that are neither numbers nor `TBA` are refused at
start-up with the offending path.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from services.metrics.domain import KPIS_BY_NAME, TBA, Target


class TargetsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class KpiTargets:
    default: Target = None
    service_areas: Mapping[str, Target] = field(default_factory=dict)

    def for_area(self, service_area: str | None) -> Target:
        if service_area is None:
            return self.default
        return self.service_areas.get(service_area, self.default)


@dataclass(frozen=True, slots=True)
class Targets:
    kpis: Mapping[str, KpiTargets] = field(default_factory=dict)

    def target(self, kpi: str, service_area: str | None) -> Target:
        targets = self.kpis.get(kpi)
        return targets.for_area(service_area) if targets else None


def _target(value: object, where: str) -> Target:
    if value is None:
        return None
    if value == TBA:
        return TBA
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TargetsError(f"{where}: expected a number or TBA, got {value!r}")
    return float(value)


def parse_targets(document: object, service_areas: frozenset[str]) -> Targets:
    if document is None:
        return Targets()
    if not isinstance(document, dict) or not isinstance(document.get("kpis", {}), dict):
        raise TargetsError("expected a mapping with a 'kpis' mapping")
    kpis: dict[str, KpiTargets] = {}
    for name, spec in (document.get("kpis") or {}).items():
        if name not in KPIS_BY_NAME:
            raise TargetsError(f"kpis.{name}: unknown KPI (known: {', '.join(KPIS_BY_NAME)})")
        if not isinstance(spec, dict):
            raise TargetsError(f"kpis.{name}: expected a mapping with default/service_areas")
        areas = spec.get("service_areas") or {}
        if not isinstance(areas, dict):
            raise TargetsError(f"kpis.{name}.service_areas: expected a mapping")
        unknown = sorted(set(areas) - service_areas)
        if unknown:
            raise TargetsError(f"kpis.{name}.service_areas: unknown {', '.join(unknown)}")
        kpis[name] = KpiTargets(
            default=_target(spec.get("default"), f"kpis.{name}.default"),
            service_areas={
                area: _target(value, f"kpis.{name}.service_areas.{area}")
                for area, value in areas.items()
            },
        )
    return Targets(kpis)


def load_targets(path: Path, service_areas: frozenset[str]) -> Targets:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise TargetsError(f"cannot read targets file {path}: {error}") from error
    try:
        return parse_targets(document, service_areas)
    except TargetsError as error:
        raise TargetsError(f"{path}: {error}") from error
