"""The committee report as CSV (the printable page and the PDF: `dashboard.committee_page`)."""

import csv
import io
from collections.abc import Mapping, Sequence

from services.metrics.domain import Standing
from services.metrics.report import ServiceStanding

STANDING_TITLES = {
    Standing.PERFORMING_WELL: "Performing well",
    Standing.AT_RISK: "At risk",
    Standing.FURTHER_WORK_REQUIRED: "Further work required",
    Standing.NOT_RATED: "Not rated (no targets, TBA or too few observations)",
}
CSV_COLUMNS = (
    "service_area",
    "standing",
    "kpi",
    "value",
    "numerator",
    "denominator",
    "target",
    "rag",
    "previous_value",
    "change_percent",
    "trend",
    "provisional",
)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def to_csv(groups: Mapping[Standing, Sequence[ServiceStanding]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for group, services in groups.items():
        for service in services:
            for row in service.kpis:
                writer.writerow(
                    [
                        service.service_area,
                        group.value,
                        row.kpi,
                        _cell(row.value),
                        _cell(row.numerator),
                        _cell(row.denominator),
                        _cell(row.target),
                        _cell(row.rag.value if row.rag else None),
                        _cell(row.previous_value),
                        _cell(row.change_percent),
                        _cell(row.trend.value if row.trend else None),
                        "yes" if row.provisional else "no",
                    ]
                )
    return out.getvalue()
