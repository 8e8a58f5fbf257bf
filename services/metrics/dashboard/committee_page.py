"""The committee report as a printable page, and as a PDF printed by headless Chromium.

The page opens with an executive summary (the services in each committee group,
the largest movements, the quarter's surges, complaint timeliness), then the
RAG matrix, a trend chart per headline KPI, and each service's KPIs. The PDF is
that same page, printed by Debian's Chromium with page numbers and the date in
the page margins (CSS `@page` margin boxes).
"""

import asyncio
import logging
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from fastapi import HTTPException, status
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from services.metrics import committee as committee_csv
from services.metrics.dashboard import pages
from services.metrics.dashboard.context import STATIC_FILES, DashboardContext, environment
from services.metrics.domain import HEADLINE_KPIS, KPIS_BY_NAME, Direction, Rag, Standing
from services.metrics.formatting import (
    day_text,
)
from services.metrics.periods import (
    Comparison,
    Period,
    financial_quarter_id,
    financial_quarter_label,
    period_containing,
)
from services.metrics.queries import Filters
from services.metrics.report import KpiRow, ServiceStanding
from services.metrics.store import MetricsStore
from services.metrics.views import ReportFormat

log = logging.getLogger(__name__)
LARGEST_MOVEMENTS = 5
PDF_SECONDS = 90
PRINTS_AT_ONCE = 2  # each print is a Chromium process: the rest wait their turn
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pdf-header-footer",  # the page's own @page margins print the number and date
    "--run-all-compositor-stages-before-draw",
    "--virtual-time-budget=20000",  # lets vega-embed draw the charts before printing
)


@dataclass(frozen=True, slots=True)
class Movement:
    service_area: str
    row: KpiRow


def largest_movements(
    groups: dict[Standing, list[ServiceStanding]], minimum_sample: int, count: int
) -> list[Movement]:
    """The biggest relative changes of KPIs with a direction, on enough observations."""
    found = [
        Movement(service.service_area, row)
        for services in groups.values()
        for service in services
        for row in service.kpis
        if row.change_percent is not None
        and KPIS_BY_NAME[row.kpi].direction is not Direction.NEITHER
        and row.rag is not Rag.INSUFFICIENT_DATA
        and (row.denominator if row.denominator is not None else row.numerator) >= minimum_sample
    ]
    found.sort(key=lambda m: abs(m.row.change_percent or 0.0), reverse=True)
    return found[:count]


QUARTERS_OFFERED = 8


def recent_quarters(today: date, count: int) -> list[tuple[str, str]]:
    """(id, label) of the quarter running today and the `count - 1` before, newest first."""
    quarters = []
    span = period_containing(today, Period.QUARTER)
    for _ in range(count):
        quarters.append((financial_quarter_id(span), financial_quarter_label(span)))
        span = period_containing(span.start - timedelta(days=1), Period.QUARTER)
    return quarters


class CommitteeDocument:
    def __init__(self, context: DashboardContext) -> None:
        self._context = context
        self._printing = asyncio.Semaphore(PRINTS_AT_ONCE)
        self._env = environment()

    async def render(
        self,
        format: ReportFormat,
        store: MetricsStore,
        generation: int,
        comparison: Comparison,
        groups: dict[Standing, list[ServiceStanding]],
        *,
        today: date,
    ) -> Response:
        name = f"committee-{financial_quarter_id(comparison.period)}"
        if format is ReportFormat.CSV:
            return PlainTextResponse(
                committee_csv.to_csv(groups),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
            )
        if format is ReportFormat.HTML:
            return HTMLResponse(await self.html(store, generation, comparison, groups, today))
        with tempfile.TemporaryDirectory(prefix="civicpulse-report-") as scratch:
            folder = Path(scratch)
            for file_name, source in STATIC_FILES.items():
                (folder / file_name).symlink_to(source)
            page = folder / "report.html"
            page.write_text(
                await self.html(store, generation, comparison, groups, today, asset_base=".")
            )
            async with self._printing:
                pdf = await self.print_pdf(page, folder)
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{name}.pdf"'},
        )

    async def html(
        self,
        store: MetricsStore,
        generation: int,
        comparison: Comparison,
        groups: dict[Standing, list[ServiceStanding]],
        today: date,
        asset_base: str = "/dashboard/static",
    ) -> str:
        context = self._context
        span = comparison.period
        council = await pages.kpi_rows_for(context, store, generation, comparison, Filters())
        trends = [
            await pages.trend(
                context,
                store,
                generation,
                KPIS_BY_NAME[name],
                period=Period.MONTH,
                end=min(span.end, today),
                filters=Filters(),
            )
            for name in HEADLINE_KPIS
        ]
        services = sorted(
            (service for members in groups.values() for service in members),
            key=lambda s: s.service_area,
        )
        matrix = [
            (s.service_area, [next(r for r in s.kpis if r.kpi == n) for n in HEADLINE_KPIS])
            for s in services
        ]
        quarter = financial_quarter_label(span)
        return self._env.get_template("committee.html").render(
            title=f"Customer service performance, {quarter}",
            quarter=quarter,
            quarter_id=financial_quarter_id(span),
            quarters=recent_quarters(today, QUARTERS_OFFERED),
            span=span,
            comparison=comparison,
            comparison_text=pages.comparison_text(comparison, Period.QUARTER),
            printed_text=day_text(today),
            groups=groups,
            titles=committee_csv.STANDING_TITLES,
            movements=largest_movements(groups, context.judging.minimum_sample, LARGEST_MOVEMENTS),
            surges=await store.surges_between(generation, span),
            timeliness=[
                council[name]
                for name in (
                    "complaints_acknowledged_within_target",
                    "complaints_responded_within_target",
                    "complaint_deadline_breaches",
                )
            ],
            headlines=[KPIS_BY_NAME[name] for name in HEADLINE_KPIS],
            matrix=matrix,
            trends=trends,
            asset_base=asset_base,
        )

    async def print_pdf(self, page: Path, folder: Path) -> bytes:
        output = folder / "report.pdf"
        try:
            process = await asyncio.create_subprocess_exec(
                str(self._context.chromium),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={folder / 'profile'}",
                f"--print-to-pdf={output}",
                page.as_uri(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            log.error("cannot start chromium at %s: %s", self._context.chromium, error)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "no Chromium to print with; try format=html"
            ) from error
        try:
            _, errors = await asyncio.wait_for(process.communicate(), PDF_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "printing the PDF took too long"
            ) from None
        if process.returncode != 0 or not output.is_file():
            log.error("chromium could not print the report: %s", errors.decode()[-2000:])
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "the PDF could not be printed; try format=html"
            )
        return output.read_bytes()
