"""The dashboard's pages, its sign-in form and its static files.

Signing in uses the API's own tokens (role manager or ops): a bearer token in
the `Authorization` header, or the same token in an HttpOnly, SameSite=Strict
cookie that the sign-in form sets. Without either, every page answers 401 with
`WWW-Authenticate: Bearer` and the sign-in form. Bad query values are 422 with
a page naming the parameter, never a 500.
"""

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from services.metrics.auth import SESSION_COOKIE, token_roles
from services.metrics.dashboard import charts, pages
from services.metrics.dashboard.committee_page import CommitteeDocument
from services.metrics.dashboard.context import STATIC_FILES, DashboardContext, environment
from services.metrics.dashboard.worklist import end_of_week
from services.metrics.domain import KPIS_BY_NAME, Unit
from services.metrics.formatting import (
    area_title,
)
from services.metrics.periods import (
    Period,
    fair_comparison,
    last_complete_quarter,
    parse_quarter,
)
from services.metrics.queries import Filters, committee_groups
from services.metrics.report import kpi_rows
from services.metrics.settings import Role
from services.metrics.views import ReportFormat
from shared.events.vocabulary import Channel

SATISFACTION_KPIS = ("csat", "average_ease", "survey_response_rate")
COMPLAINT_TRENDS = (
    "complaint_escalation_rate",
    "complaints_acknowledged_within_target",
    "complaints_responded_within_target",
)
LATEST_COMMENTS = 20
CHART_PERIODS = (Period.MONTH, Period.WEEK, Period.DAY)
OVERVIEW_PERIODS = (Period.MONTH, Period.WEEK, Period.QUARTER, Period.YEAR)


class BadParameterError(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def dashboard_router(context: DashboardContext) -> APIRouter:
    router = APIRouter(prefix="/dashboard", include_in_schema=False)
    env = environment()
    role_of = token_roles(context.tokens)
    committee = CommitteeDocument(context)

    def signed_in(request: Request) -> Role | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            return role_of(token.strip())
        return role_of(request.cookies.get(SESSION_COOKIE))

    def page(template: str, status_code: int = 200, **values: object) -> HTMLResponse:
        return HTMLResponse(env.get_template(template).render(**values), status_code=status_code)

    def sign_in_page(message: str | None = None) -> HTMLResponse:
        response = page("sign_in.html", 401, title="Sign in", message=message, nav=False)
        response.headers["WWW-Authenticate"] = 'Bearer realm="CivicPulse metrics"'
        return response

    def bad_parameter(error: BadParameterError) -> HTMLResponse:
        return page(
            "error.html",
            422,
            title="That page does not exist",
            parameter=error.parameter,
            message=str(error),
        )

    def check_area(value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if value not in context.service_areas:
            raise BadParameterError(
                "service_area",
                f"unknown service area {value!r}; known: "
                + ", ".join(sorted(context.service_areas)),
            )
        return value

    def check_channel(value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if value not in {c.value for c in Channel}:
            raise BadParameterError(
                "channel",
                f"unknown channel {value!r}; known: {', '.join(c.value for c in Channel)}",
            )
        return value

    def check_period(value: str, allowed: tuple[Period, ...]) -> Period:
        if value not in {p.value for p in allowed}:
            raise BadParameterError(
                "period", f"unknown period {value!r}; known: {', '.join(p.value for p in allowed)}"
            )
        return Period(value)

    @router.get("/sign-in", response_class=HTMLResponse)
    async def sign_in_form() -> HTMLResponse:
        response = sign_in_page()
        response.status_code = 200
        return response

    @router.post("/sign-in", response_model=None)
    async def sign_in(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        if role_of(token) is None:
            return sign_in_page("That token is not known. Ask an administrator for one.")
        response = RedirectResponse("/dashboard", status_code=303)
        response.set_cookie(
            SESSION_COOKIE, token, httponly=True, samesite="strict", path="/dashboard"
        )
        return response

    @router.post("/sign-out", response_model=None)
    async def sign_out() -> Response:
        response = RedirectResponse("/dashboard/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/dashboard")
        return response

    @router.get("/static/{name}", response_model=None)
    async def static(name: str) -> Response:
        path = STATIC_FILES.get(name)
        if path is None or not path.is_file():
            return Response(f"no static file {name!r}", status_code=404, media_type="text/plain")
        return FileResponse(path, headers={"Cache-Control": "max-age=3600"})

    @router.get("", response_class=HTMLResponse)
    async def overview(request: Request, period: str = "month") -> HTMLResponse:
        if signed_in(request) is None:
            return sign_in_page()
        try:
            chosen = check_period(period, OVERVIEW_PERIODS)
        except BadParameterError as error:
            return bad_parameter(error)
        store = context.store()
        generation = await store.live_generation()
        comparison = pages.current(context, chosen)
        return page(
            "overview.html",
            title="Overview",
            period=chosen,
            periods=OVERVIEW_PERIODS,
            comparison_text=pages.comparison_text(comparison, chosen),
            headlines=pages.headline_kpis(),
            rows=await pages.matrix(context, store, generation, comparison),
            banner=await pages.banner(context, store, generation),
        )

    @router.get("/kpi/{kpi}", response_class=HTMLResponse)
    async def kpi_page(
        request: Request,
        kpi: str,
        period: str = "month",
        service_area: Annotated[str | None, Query()] = None,
        channel: Annotated[str | None, Query()] = None,
    ) -> HTMLResponse:
        if signed_in(request) is None:
            return sign_in_page()
        try:
            definition = KPIS_BY_NAME.get(kpi)
            if definition is None:
                raise BadParameterError("kpi", f"unknown KPI {kpi!r}")
            chosen = check_period(period, CHART_PERIODS)
            filters = Filters(check_area(service_area), check_channel(channel))
        except BadParameterError as error:
            return bad_parameter(error)
        store = context.store()
        generation = await store.live_generation()
        trend = await pages.trend(
            context,
            store,
            generation,
            definition,
            period=chosen,
            end=context.today(),
            filters=filters,
        )
        return page(
            "kpi.html",
            title=definition.title,
            kpi=definition,
            trend=trend,
            period=chosen,
            periods=CHART_PERIODS,
            filters=filters,
            service_areas=sorted(context.service_areas),
            channels=[c.value for c in Channel],
            target=context.judging.targets.target(definition.name, filters.service_area),
            banner=await pages.banner(context, store, generation),
        )

    @router.get("/complaints", response_class=HTMLResponse)
    async def complaints(request: Request) -> HTMLResponse:
        if signed_in(request) is None:
            return sign_in_page()
        store = context.store()
        generation = await store.live_generation()
        open_now = await store.open_complaints(generation)
        trends = [
            await pages.trend(
                context,
                store,
                generation,
                KPIS_BY_NAME[name],
                period=Period.MONTH,
                end=context.today(),
                filters=Filters(),
            )
            for name in COMPLAINT_TRENDS
        ]
        open_chart = charts.bar_chart(
            "Complaints open now by procedure and stage",
            Unit.COUNT,
            [(f"{o.scope} stage {o.stage}", float(o.count)) for o in open_now],
        )
        return page(
            "complaints.html",
            title="Complaints",
            open_now=open_now,
            open_chart=open_chart,
            due=await context.worklist.due_before(end_of_week(context.today())),
            trends=trends,
            banner=await pages.banner(context, store, generation),
        )

    @router.get("/committee", response_model=None)
    async def committee_report(
        request: Request, quarter: str | None = None, format: str = "html"
    ) -> Response:
        """The committee report for a browser signed in to the dashboard (HTML or PDF)."""
        if signed_in(request) is None:
            return sign_in_page()
        today = context.today()
        try:
            span = last_complete_quarter(today) if quarter in (None, "") else parse_quarter(quarter)
        except ValueError as error:
            return bad_parameter(BadParameterError("quarter", str(error)))
        if format not in (ReportFormat.HTML.value, ReportFormat.PDF.value):
            return bad_parameter(BadParameterError("format", f"{format!r}: use html or pdf"))
        store = context.store()
        generation = await store.live_generation()
        comparison = fair_comparison(span, Period.QUARTER, today)
        groups = await committee_groups(
            store,
            generation,
            comparison,
            context.service_areas,
            today=today,
            judging=context.judging,
        )
        return await committee.render(
            ReportFormat(format), store, generation, comparison, groups, today=today
        )

    @router.get("/satisfaction", response_class=HTMLResponse)
    async def satisfaction(request: Request) -> HTMLResponse:
        if signed_in(request) is None:
            return sign_in_page()
        store = context.store()
        generation = await store.live_generation()
        comparison = pages.current(context, Period.MONTH)
        wanted = [KPIS_BY_NAME[name] for name in SATISFACTION_KPIS]
        tables = {}
        for dimension in ("service_area", "channel"):
            current = await store.totals_by(generation, comparison.counted, dimension)
            previous = await store.totals_by(generation, comparison.previous, dimension)
            names = (
                sorted(context.service_areas)
                if dimension == "service_area"
                else sorted(c.value for c in Channel)
            )
            tables[dimension] = [
                (
                    name,
                    kpi_rows(
                        current.get(name, {}),
                        previous.get(name, {}),
                        span=comparison.period,
                        service_area=name if dimension == "service_area" else None,
                        today=context.today(),
                        judging=context.judging,
                        kpis=wanted,
                    ),
                )
                for name in names
            ]
        csat_chart = charts.bar_chart(
            "CSAT by service area",
            Unit.RATIO,
            [(area_title(name), rows[0].value) for name, rows in tables["service_area"]],
        )
        return page(
            "satisfaction.html",
            title="Satisfaction",
            comparison_text=pages.comparison_text(comparison, Period.MONTH),
            wanted=wanted,
            tables=tables,
            csat_chart=csat_chart,
            comments=await context.comments.latest(LATEST_COMMENTS),
            banner=await pages.banner(context, store, generation),
        )

    return router
