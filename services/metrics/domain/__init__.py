"""Metrics' rules, pure and without I/O, one module per job:

- `measures`: every measure's name, and what each canonical event adds to the counters;
- `kpis`: the KPIs as numerator / denominator over measures, and a chart's series;
- `judging`: RAG against targets, direction of travel, the committee standing;
- `surges`: the surge statistic and when a surge raises an alert;
- `rules`: the settings that change what events count as.

The names most callers need are importable from here.
"""

from services.metrics.domain.judging import (
    TBA,
    Change,
    Rag,
    Standing,
    Target,
    Trend,
    change,
    rag_status,
    standing,
)
from services.metrics.domain.kpis import (
    ALL_MEASURES,
    HEADLINE_KPIS,
    KPIS,
    KPIS_BY_NAME,
    Direction,
    Figure,
    Kpi,
    Unit,
    evaluate,
    series,
)
from services.metrics.domain.measures import ComplaintMeasure, Measure, Scope
from services.metrics.domain.rules import Rules
from services.metrics.domain.surges import SurgeCheck, SurgeRule, baseline, check_surge

__all__ = [
    "ALL_MEASURES",
    "HEADLINE_KPIS",
    "KPIS",
    "KPIS_BY_NAME",
    "TBA",
    "Change",
    "ComplaintMeasure",
    "Direction",
    "Figure",
    "Kpi",
    "Measure",
    "Rag",
    "Rules",
    "Scope",
    "Standing",
    "SurgeCheck",
    "SurgeRule",
    "Target",
    "Trend",
    "Unit",
    "baseline",
    "change",
    "check_surge",
    "evaluate",
    "rag_status",
    "series",
    "standing",
]
