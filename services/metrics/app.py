"""The metrics service's wiring: consumer, outbox relay, gauges, HTTP API and lifespan."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Annotated, Any, Unpack

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Path, Query, status

from services.metrics.applier import BatchApplier, ConsumerMetrics, LiveConsumer
from services.metrics.auth import metrics_oidc, role_checker
from services.metrics.complaints_report import add_complaints_report_route
from services.metrics.dashboard import DashboardContext, dashboard_router
from services.metrics.dashboard.comments import comments_of
from services.metrics.dashboard.committee_page import CommitteeDocument
from services.metrics.dashboard.worklist import worklist_of
from services.metrics.domain import KPIS_BY_NAME, Kpi
from services.metrics.domain.report_kpis import REPORT_KPIS_BY_NAME
from services.metrics.gauges import GaugeRefresher, KpiGauges
from services.metrics.kpi_cache import KpiTotalsCache
from services.metrics.periods import (
    FIRST_DAY,
    LAST_DAY,
    DateRange,
    Period,
    fair_comparison,
    financial_quarter_id,
    financial_quarter_label,
    last_complete_quarter,
    local_day,
    parse_quarter,
    period_containing,
    period_label,
    periods_back,
    ranges_between,
)
from services.metrics.queries import Filters, committee_groups, kpi_view, series_points
from services.metrics.report import Judging
from services.metrics.settings import SERVICE, MetricsSettings, Role
from services.metrics.store import MIGRATIONS, MetricsStore
from services.metrics.targets import load_targets
from services.metrics.views import (
    SERVICE_LEVEL_METHOD,
    CommitteeResponse,
    KpisResponse,
    KpiValue,
    OpenComplaintsCount,
    PipelineResponse,
    ReportFormat,
    SeriesPoint,
    SeriesResponse,
    ServiceStandingModel,
    TopicPipeline,
)
from shared.consumer import ConsumerSettings, subscribe_events
from shared.consumer_lag import KafkaPositions
from shared.events.vocabulary import Channel
from shared.http import add_operational_routes, document_problems, limit_request_bodies
from shared.postgres import create_pool
from shared.startup import AppOptions, Wiring
from shared.supervisor import Supervisor
from shared.topics import CANONICAL_TOPICS
from shared.vocabulary import load_service_areas

log = logging.getLogger(__name__)
MAX_SERIES_POINTS = 400


async def read_only_reset(connection: asyncpg.Connection) -> None:
    """The API pool's reset of a released connection: nothing. Its connections only run
    single statements, never SET, LISTEN, cursors or session locks, so asyncpg's default
    reset (one more round trip per request) has nothing to undo; asyncpg still rolls back
    a transaction left open before it calls this."""


def _unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["query", field], "msg": message, "type": "value_error"}],
    )


def create_app(settings: MetricsSettings | None = None, **options: Unpack[AppOptions]) -> FastAPI:
    wiring = Wiring.begin(SERVICE, settings or MetricsSettings(), **options)
    settings, broker = wiring.settings, wiring.broker
    registry, clock = wiring.registry, wiring.clock
    service_areas = load_service_areas(settings.vocabulary_file)
    targets = load_targets(settings.metrics_targets_file, service_areas)
    judging = Judging(
        targets=targets,
        amber_tolerance=settings.metrics_amber_tolerance,
        minimum_sample=settings.metrics_minimum_sample,
        fcr_window_days=settings.metrics_fcr_window_days,
    )
    consumer_metrics = ConsumerMetrics(registry)
    gauges = KpiGauges(registry)
    # Repeated reads between batches cost one small query (kpi_cache.py says why it is exact).
    kpi_cache = KpiTotalsCache()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await wiring.open_pool(MIGRATIONS)
        applier = BatchApplier(rules=settings.rules, clock=clock, publish_surges=True)
        store = MetricsStore(pool)
        live = LiveConsumer(store, applier, consumer_metrics)
        subscribe_events(
            broker,
            CANONICAL_TOPICS,
            live.handle,
            group_id=settings.metrics_group_id,
            settings=ConsumerSettings.of(settings),
            max_records=settings.metrics_max_batch,
        )
        kafka = KafkaPositions(settings.kafka)
        relay = wiring.outbox_relay(pool)
        refresher = GaugeRefresher(
            store,
            gauges,
            service_areas=service_areas,
            topics=CANONICAL_TOPICS,
            group_id=settings.metrics_group_id,
            kafka=kafka,
            clock=clock,
            interval_seconds=settings.metrics_refresh_seconds,
        )
        # The API reads on a pool of its own, opened whole at start: a reader never waits
        # behind the consumer's batches for a connection, nor for a first connect.
        read_pool = await create_pool(
            settings.database_url,
            min_size=settings.metrics_api_pool_size,
            max_size=settings.metrics_api_pool_size,
            reset=read_only_reset,
        )
        state.update(pool=pool, store=MetricsStore(read_pool))
        if not settings.metrics_api_tokens:
            log.warning("no CIVICPULSE_METRICS_API_TOKENS set: every API caller will get 401")
        await broker.start()
        await kafka.start()
        # What start-up made (modules, schemas, this app) lives as long as the process:
        # frozen, it is left out of the collections that batches of events set off.
        gc.collect()
        gc.freeze()
        loops = Supervisor(SERVICE)
        loops.start_relay(relay)  # first: what waits in the outbox goes before new work
        loops.start("gauge refresher", refresher.run, refresher.stop)
        log.info("metrics ready: consuming %s", ", ".join(t.name for t in CANONICAL_TOPICS))
        # On the way out: stop consuming, drain the relay, stop the producer.
        async with loops.serving(
            consumers=[broker],
            producers=[broker.stop],
            then_close=[kafka.stop, read_pool.close, wiring.close_pool],
        ):
            yield

    app = FastAPI(
        title="CivicPulse metrics",
        version="1.0.0",
        description="Live KPIs for managers and operations, computed from every canonical "
        "event. Every figure has its numerator and denominator; no data is `null`, never 0%. "
        "Periods are local days in Europe/London; weeks run Monday to Sunday; quarters and "
        "years are financial (April to March). " + SERVICE_LEVEL_METHOD + " Authenticate "
        "with `Authorization: Bearer <token>`: role `manager` reads KPIs and reports, role "
        "`ops` also the pipeline view. A missing or unknown token is 401; a known token "
        "whose role may not see the resource is 403.",
        lifespan=lifespan,
    )
    requires = role_checker(settings.metrics_api_tokens, metrics_oidc(settings))
    manager_or_ops = Depends(requires(Role.MANAGER))
    ops_only = Depends(requires(Role.OPS))

    def today() -> date:
        return local_day(clock())

    def ready_store() -> MetricsStore:
        store: MetricsStore | None = state.get("store")
        if store is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "starting: try again shortly")
        return store

    def check_area(service_area: str | None) -> str | None:
        if service_area is not None and service_area not in service_areas:
            raise _unprocessable(
                "service_area",
                f"unknown service area {service_area!r}; known: {', '.join(sorted(service_areas))}",
            )
        return service_area

    dashboard = DashboardContext(
        store=ready_store,
        judging=judging,
        service_areas=service_areas,
        tokens=settings.metrics_api_tokens,
        today=today,
        fcr_window_days=settings.metrics_fcr_window_days,
        worklist=worklist_of(settings.metrics_complaints_url, settings.metrics_complaints_api_key),
        comments=comments_of(settings.metrics_feedback_url, settings.metrics_feedback_api_key),
    )
    committee_document = CommitteeDocument(dashboard)

    def check_kpi(name: str) -> Kpi:
        definition = KPIS_BY_NAME.get(name)
        if definition is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=[
                    {
                        "loc": ["path", "kpi"],
                        "msg": f"unknown KPI {name!r}; known: {', '.join(KPIS_BY_NAME)}",
                        "type": "value_error",
                    }
                ],
            )
        return definition

    def check_named_kpis(names: list[str] | None) -> list[Kpi] | None:
        if not names:
            return None
        unknown = [n for n in names if n not in KPIS_BY_NAME and n not in REPORT_KPIS_BY_NAME]
        if unknown:
            raise _unprocessable("kpi", f"unknown KPI {unknown[0]!r}")
        return [KPIS_BY_NAME.get(n) or REPORT_KPIS_BY_NAME[n] for n in dict.fromkeys(names)]

    def check_quarter(text: str | None) -> DateRange:
        if text is None:
            return last_complete_quarter(today())
        try:
            return parse_quarter(text)
        except ValueError as error:
            raise _unprocessable("quarter", str(error)) from error

    def resolve_range(first: date | None, last: date | None, period: Period) -> DateRange:
        if first is None and last is not None:
            raise _unprocessable("from", "give `from` with `to`")
        if last is not None and first is not None:
            if last < first:
                raise _unprocessable("to", "`to` is before `from`")
            if (last - first).days > 366 * 5:
                raise _unprocessable("to", "at most five years at once")
            return DateRange(first, last)
        return period_containing(first or today(), period)

    @app.get(
        "/v1/kpis",
        response_model=KpisResponse,
        tags=["kpis"],
        summary="Every KPI for a period, with target, RAG and change against the period before",
        description="Without `from` and `to`: the current `period` (default month). With "
        "`from` only: the `period` containing that date. With both: exactly those days "
        "(inclusive), compared with as many days before. A period still running is "
        "counted up to today and compared with the same number of elapsed days of the "
        "period before (`partial: true`, `compared_days`), never with the whole of it. "
        + SERVICE_LEVEL_METHOD,
        responses={401: {"description": "No or unknown token."}},
    )
    async def get_kpis(
        _: Annotated[Role, manager_or_ops],
        first: Annotated[date | None, Query(alias="from", ge=FIRST_DAY, le=LAST_DAY)] = None,
        last: Annotated[date | None, Query(alias="to", ge=FIRST_DAY, le=LAST_DAY)] = None,
        period: Period = Period.MONTH,
        service_area: str | None = None,
        channel: Channel | None = None,
        kpi: Annotated[
            list[str] | None,
            Query(
                max_length=50,
                description="Only these KPIs (repeatable); also the annual complaints "
                "report's count KPIs (`report_...`), which are listed only when named.",
            ),
        ] = None,
    ) -> KpisResponse:
        named = check_named_kpis(kpi)
        area = check_area(service_area)
        span = resolve_range(first, last, period)
        whole_period = last is None
        comparison = fair_comparison(span, period if whole_period else None, today())
        filters = Filters(area, channel.value if channel else None)
        view = await kpi_view(
            ready_store(),
            comparison,
            filters=filters,
            today=today(),
            judging=judging,
            kpis=named,
            cache=kpi_cache,
        )
        return KpisResponse(
            period=period if whole_period else None,
            label=period_label(span, period)
            if whole_period
            else f"{span.start.isoformat()}..{span.end.isoformat()}",
            start=span.start,
            end=span.end,
            partial=comparison.partial,
            compared_days=comparison.compared_days,
            previous_start=comparison.previous.start,
            previous_end=comparison.previous.end,
            service_area=area,
            channel=channel,
            generation=view.generation,
            service_level_seconds=settings.metrics_service_level_seconds,
            service_level_method=SERVICE_LEVEL_METHOD,
            kpis=[KpiValue.model_validate(row) for row in view.rows],
            open_complaints=[OpenComplaintsCount.model_validate(o) for o in view.open_complaints],
        )

    @app.get(
        "/v1/kpis/{kpi}/series",
        response_model=SeriesResponse,
        tags=["kpis"],
        summary="One KPI per period over a span, for charts",
        description="Points for each whole `period` (default month) covering `from`..`to` "
        "(default: the last 12 periods up to today). The period still running is "
        "`partial: true`: counted up to today. An unknown KPI is 422.",
    )
    async def get_series(
        _: Annotated[Role, manager_or_ops],
        kpi: Annotated[str, Path(description="A KPI name, as in GET /v1/kpis.")],
        first: Annotated[date | None, Query(alias="from", ge=FIRST_DAY, le=LAST_DAY)] = None,
        last: Annotated[date | None, Query(alias="to", ge=FIRST_DAY, le=LAST_DAY)] = None,
        period: Period = Period.MONTH,
        service_area: str | None = None,
        channel: Channel | None = None,
    ) -> SeriesResponse:
        definition = check_kpi(kpi)
        area = check_area(service_area)
        end = last or today()
        start = first or periods_back(end, period, 11)
        if end < start:
            raise _unprocessable("to", "`to` is before `from`")
        buckets = ranges_between(DateRange(start, end), period)
        if len(buckets) > MAX_SERIES_POINTS:
            raise _unprocessable("from", f"at most {MAX_SERIES_POINTS} points; use a longer period")
        store = ready_store()
        points = await series_points(
            store,
            await store.live_generation(),
            definition,
            buckets,
            period=period,
            filters=Filters(area, channel.value if channel else None),
            today=today(),
            fcr_window_days=settings.metrics_fcr_window_days,
        )
        return SeriesResponse(
            kpi=definition.name,
            title=definition.title,
            unit=definition.unit.value,
            period=period,
            service_area=area,
            channel=channel,
            points=[SeriesPoint.model_validate(point) for point in points],
        )

    @app.get(
        "/v1/reports/committee",
        response_model=CommitteeResponse,
        tags=["reports"],
        summary="The committee view of a quarter: performing well, at risk, further work",
        description="`quarter=2026-27-Q2` (financial: Q2 2026/27, July to September 2026) or "
        "`quarter=2026Q3` (the same calendar quarter); by default the last complete quarter. "
        "Each service area's worst RAG colour over its KPIs decides its group: any "
        "red is further work required, else any amber is at risk, else any green is "
        "performing well; an area with no colour at all (no targets, TBA, too few "
        "observations) is not rated. `format=csv` gives one row per area and KPI; "
        "`format=html` a printable page with an executive summary, trend charts and the "
        "RAG matrix; `format=pdf` that page printed by headless Chromium.",
        responses={
            200: {
                "content": {"text/csv": {}, "text/html": {}, "application/pdf": {}},
                "description": "JSON, CSV, HTML or PDF by `format`.",
            }
        },
    )
    async def get_committee(
        _: Annotated[Role, manager_or_ops],
        quarter: Annotated[
            str | None,
            Query(description="2026-27-Q1 or 2026Q2; default the last complete quarter"),
        ] = None,
        format: ReportFormat = ReportFormat.JSON,
    ) -> Any:
        span = check_quarter(quarter)
        store = ready_store()
        generation = await store.live_generation()
        comparison = fair_comparison(span, Period.QUARTER, today())
        groups = await committee_groups(
            store, generation, comparison, service_areas, today=today(), judging=judging
        )
        if format is not ReportFormat.JSON:
            return await committee_document.render(
                format, store, generation, comparison, groups, today=today()
            )
        return CommitteeResponse(
            quarter=financial_quarter_id(span),
            financial_quarter=financial_quarter_label(span),
            start=span.start,
            end=span.end,
            partial=comparison.partial,
            compared_days=comparison.compared_days,
            previous_start=comparison.previous.start,
            previous_end=comparison.previous.end,
            groups={
                group: [ServiceStandingModel.model_validate(s) for s in services]
                for group, services in groups.items()
            },
        )

    add_complaints_report_route(app, manager=requires(Role.MANAGER), store=ready_store, today=today)

    @app.get(
        "/v1/pipeline",
        response_model=PipelineResponse,
        tags=["operations"],
        summary="The pipeline's health (role ops): events applied, last event age, surges",
    )
    async def get_pipeline(_: Annotated[Role, ops_only]) -> PipelineResponse:
        store = ready_store()
        generation = await store.live_generation()
        now = clock()
        states = await store.topic_states(generation)
        recent = DateRange(today() - timedelta(days=6), today())
        surges = await store.surges_between(generation, recent)
        return PipelineResponse(
            generation=generation,
            topics=[
                TopicPipeline(
                    topic=s.topic,
                    events_applied=s.events,
                    last_event_recorded_at=s.last_recorded_at,
                    last_event_age_seconds=max(0.0, (now - s.last_recorded_at).total_seconds()),
                    last_applied_at=s.last_applied_at,
                )
                for s in states
            ],
            surges_last_7_days=surges,
        )

    app.include_router(dashboard_router(dashboard))
    add_operational_routes(app, broker=broker, registry=registry, pool=lambda: state.get("pool"))
    document_problems(app, roles=True)
    limit_request_bodies(app, settings.http_max_body_bytes)
    return app
