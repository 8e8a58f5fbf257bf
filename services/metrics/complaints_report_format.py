"""The annual complaints report as CSV (one row per figure, then the learning actions) and
as a printable HTML page (one section per procedure)."""

import csv
import html
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.metrics.complaints_report import ComplaintsReport, Figure


def _rows(report: "ComplaintsReport") -> list[tuple[str, str, str, float, float | None]]:
    """(section, figure, key, value, previous) for every figure of the report."""
    rows: list[tuple[str, str, str, float, float | None]] = []
    for name, section in report.sections.items():

        def add(figure: str, key: str, value: "Figure", section_name: str = name) -> None:
            rows.append((section_name, figure, key, value.value, value.previous))

        for key, fig in section.received_by_stage.items():
            add("received_by_stage", key, fig)
        for key, fig in section.received_by_service_area.items():
            add("received_by_service_area", key, fig)
        for key, fig in section.received_by_channel.items():
            add("received_by_channel", key, fig)
        for stage, outcomes in section.outcomes_by_stage.items():
            for outcome, fig in outcomes.items():
                add("outcomes", f"stage {stage} {outcome}", fig)
        for stage, deadlines in section.timeliness_by_stage.items():
            for deadline, parts in deadlines.items():
                for part, fig in parts.items():
                    add("timeliness", f"stage {stage} {deadline} {part}", fig)
        for key, fig in section.extensions_by_stage.items():
            add("extensions", f"stage {key}", fig)
        for key, fig in section.refusals_by_reason.items():
            add("escalations_refused", key, fig)
        add("withdrawn", "", section.withdrawn)
        add("ombudsman_referrals", "", section.ombudsman_referrals)
        for key, fig in section.ombudsman_decisions.items():
            add("ombudsman_decisions", key, fig)
        for key, fig in section.learning_action_counts.items():
            add("learning_actions", key, fig)
    return rows


def to_csv(report: "ComplaintsReport") -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "figure", "key", "value", "previous_year"])
    for row in _rows(report):
        writer.writerow(row)
    writer.writerow([])
    writer.writerow(
        ["section", "complaint_id", "learning_action", "owner_team", "due_date", "status"]
    )
    for name, section in report.sections.items():
        for a in section.learning_actions:
            writer.writerow(
                [name, a.complaint_id, a.description, a.owner_team, a.due_date or "", a.status]
            )
    return out.getvalue()


# Reasons are officers' free text about a person: the complaints service keeps them with
# the case (erasable), and the events this report is built from no longer carry them.
KEPT_WITH_CASE = "kept with the case (complaints service)"
SECTION_TITLES = {
    "corporate": "Corporate complaints (Complaint Handling Code)",
    "adult_social_care": "Adult social care (2009 regulations)",
    "childrens_social_care": "Children's social care (2006 regulations)",
}


def to_html(report: "ComplaintsReport") -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Annual complaints report {e(report.financial_year)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "margin-bottom:1.5em}td,th{border:1px solid #555;padding:.2em .6em;text-align:left}"
        "@media print{section{page-break-before:always}}</style></head><body>",
        f"<h1>Annual complaints performance and service improvement report "
        f"{e(report.financial_year)}</h1>",
        f"<p>{report.start:%d %B %Y} to {report.end:%d %B %Y}, compared with the year before.</p>",
    ]
    rows = _rows(report)
    for name, section in report.sections.items():
        parts.append(f"<section><h2>{e(SECTION_TITLES.get(name, name))}</h2>")
        parts.append("<table><tr><th>Figure</th><th></th><th>This year</th><th>Last year</th></tr>")
        for row_section, figure, key, value, previous in rows:
            if row_section == name:
                parts.append(
                    f"<tr><td>{e(figure.replace('_', ' '))}</td><td>{e(key)}</td>"
                    f"<td>{value:g}</td><td>{'' if previous is None else f'{previous:g}'}</td></tr>"
                )
        parts.append(
            "</table><h3>Extensions and why</h3><table><tr><th>Complaint</th><th>Stage</th>"
            "<th>Deadline</th><th>Reason</th></tr>"
        )
        for x in section.extension_reasons:
            parts.append(
                f"<tr><td>{e(str(x['complaint_id']))}</td><td>{x['stage']}</td>"
                f"<td>{e(str(x['deadline']))}</td>"
                f"<td>{e(str(x.get('reason', KEPT_WITH_CASE)))}</td></tr>"
            )
        parts.append(
            "</table><h3>Learning actions</h3><table><tr><th>Complaint</th>"
            "<th>Action</th><th>Owner</th><th>Due</th><th>Status</th></tr>"
        )
        for a in section.learning_actions:
            parts.append(
                f"<tr><td>{e(a.complaint_id)}</td><td>{e(a.description)}</td>"
                f"<td>{e(a.owner_team)}</td><td>{a.due_date or ''}</td>"
                f"<td>{e(a.status.replace('_', ' '))}</td></tr>"
            )
        parts.append("</table></section>")
    parts.append("</body></html>")
    return "".join(parts)
