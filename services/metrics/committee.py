"""The committee report as CSV and as a printable HTML page with inline SVG charts."""

import csv
import html
import io
from collections.abc import Mapping, Sequence

from services.metrics.domain import KPIS_BY_NAME, Rag, Standing, Unit
from services.metrics.report import KpiRow, ServiceStanding

STANDING_TITLES = {
    Standing.PERFORMING_WELL: "Performing well",
    Standing.AT_RISK: "At risk",
    Standing.FURTHER_WORK_REQUIRED: "Further work required",
    Standing.NOT_RATED: "Not rated (no targets, TBA or too few observations)",
}
RAG_COLOURS = {
    Rag.GREEN: "#2e7d32",
    Rag.AMBER: "#f9a825",
    Rag.RED: "#c62828",
    Rag.INSUFFICIENT_DATA: "#9e9e9e",
    None: "#607d8b",
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


def format_value(row: KpiRow) -> str:
    if row.value is None:
        return "no data"
    unit = KPIS_BY_NAME[row.kpi].unit
    if unit is Unit.RATIO:
        return f"{row.value * 100:.1f}%"
    if unit is Unit.COUNT:
        return f"{row.value:,.0f}"
    if unit is Unit.SECONDS:
        return f"{row.value:.0f} s"
    return f"{row.value:.2f}"


def _bar_chart(rows: Sequence[KpiRow]) -> str:
    """Horizontal bars of the ratio KPIs against their targets, coloured by RAG."""
    ratios = [r for r in rows if KPIS_BY_NAME[r.kpi].unit is Unit.RATIO and r.value is not None]
    if not ratios:
        return "<p class='muted'>No ratio KPIs with data this quarter.</p>"
    width, bar_height, label_width = 640, 18, 260
    height = len(ratios) * (bar_height + 6) + 10
    parts = [
        # Inline SVG in HTML needs no namespace: the page refers to nothing outside it.
        f"<svg role='img' width='{width}' height='{height}' viewBox='0 0 {width} {height}'>"
    ]
    scale = width - label_width - 60
    for index, row in enumerate(ratios):
        y = 5 + index * (bar_height + 6)
        value = max(0.0, min(1.0, row.value or 0.0))
        colour = RAG_COLOURS[row.rag]
        parts.append(
            f"<text x='0' y='{y + 13}' font-size='12'>{html.escape(row.title)}</text>"
            f"<rect x='{label_width}' y='{y}' width='{value * scale:.1f}' height='{bar_height}'"
            f" fill='{colour}'/>"
            f"<text x='{label_width + value * scale + 4:.1f}' y='{y + 13}' font-size='12'>"
            f"{html.escape(format_value(row))}</text>"
        )
        if isinstance(row.target, float):
            x = label_width + max(0.0, min(1.0, row.target)) * scale
            parts.append(
                f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{y - 2}' y2='{y + bar_height + 2}'"
                " stroke='#000' stroke-width='2'/>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: Sequence[KpiRow]) -> str:
    lines = [
        "<table><thead><tr><th>KPI</th><th>Value</th><th>Target</th><th>RAG</th>"
        "<th>Previous</th><th>Change</th></tr></thead><tbody>"
    ]
    for row in rows:
        target = "" if row.target is None else str(row.target)
        rag = row.rag.value.replace("_", " ") if row.rag else ""
        change = "" if row.change_percent is None else f"{row.change_percent:+.0f}%"
        previous = "" if row.previous_value is None else f"{row.previous_value:.4g}"
        provisional = " (provisional)" if row.provisional else ""
        lines.append(
            f"<tr><td>{html.escape(row.title)}{provisional}</td>"
            f"<td>{html.escape(format_value(row))}</td><td>{html.escape(target)}</td>"
            f"<td><span class='rag' style='background:{RAG_COLOURS[row.rag]}'></span>"
            f"{html.escape(rag)}</td><td>{previous}</td><td>{change}</td></tr>"
        )
    lines.append("</tbody></table>")
    return "".join(lines)


STYLE = """
body { font-family: Arial, Helvetica, sans-serif; margin: 2em; color: #111; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #333; margin-top: 1.5em; }
table { border-collapse: collapse; width: 100%; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 4px 6px; text-align: left; }
.rag { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 4px; }
.muted { color: #666; } .service { page-break-inside: avoid; }
@media print { body { margin: 1cm; } a { color: inherit; } }
"""


def to_html(
    groups: Mapping[Standing, Sequence[ServiceStanding]], *, title: str, subtitle: str
) -> str:
    body = [
        f"<h1>{html.escape(title)}</h1><p class='muted'>{html.escape(subtitle)}</p>",
        "<ul>",
        *(
            f"<li>{html.escape(STANDING_TITLES[group])}: {len(services)}</li>"
            for group, services in groups.items()
        ),
        "</ul>",
    ]
    for group, services in groups.items():
        if not services:
            continue
        body.append(f"<h2>{html.escape(STANDING_TITLES[group])}</h2>")
        for service in services:
            name = service.service_area.replace("_", " ").capitalize()
            body.append(f"<div class='service'><h3>{html.escape(name)}</h3>")
            body.append(_bar_chart(service.kpis))
            body.append(_table(service.kpis))
            body.append("</div>")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        + "".join(body)
        + "</body></html>"
    )
