"""Prometheus gauges read from PostgreSQL and Kafka, so every replica reports the same truth.

A task refreshes them every few seconds; labels come only from the configured
vocabulary (service areas) and the channel enum, plus `all` for totals, so
cardinality is bounded whatever the events say.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge

from services.metrics.domain import KPIS, evaluate
from services.metrics.domain.measures import (
    SURGE_MEASURES,
    ComplaintMeasure,
    Scope,
    complaint_measure,
)
from services.metrics.periods import DateRange, local_day
from services.metrics.settings import SERVICE
from services.metrics.store import MetricsStore
from shared.consumer_lag import KafkaPositions, consumer_lag_gauge
from shared.dead_letters import is_transient
from shared.events.vocabulary import Channel
from shared.topics import TopicSpec, dead_letter_twin

log = logging.getLogger(__name__)
ALL = "all"
CHANNELS = tuple(channel.value for channel in Channel)


class KpiGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.kpi_today = Gauge(
            "metrics_kpi_today",
            "Each KPI over today (Europe/London) so far; absent when it has no data.",
            ["kpi", "service_area", "channel"],
            registry=registry,
        )
        self.breaches = Gauge(
            "metrics_complaint_deadline_breaches",
            "Complaint deadlines breached, all time (corporate and statutory), from the "
            "ComplaintDeadlineBreached events applied.",
            ["service_area"],
            registry=registry,
        )
        self.surge_active = Gauge(
            "metrics_surge_active",
            "1 while a service area's count today is a surge (see docs/metrics.md).",
            ["service_area", "measure"],
            registry=registry,
        )
        self.events_applied = Gauge(
            "metrics_events_applied",
            "Events applied to the live aggregates per topic, from PostgreSQL.",
            ["topic"],
            registry=registry,
        )
        self.last_event_age = Gauge(
            "metrics_last_event_age_seconds",
            "Seconds since the newest applied event of each topic was recorded.",
            ["topic"],
            registry=registry,
        )
        self.consumer_lag = consumer_lag_gauge(SERVICE, registry)
        self.dead_letters = Gauge(
            "metrics_dead_letters",
            "Records ever written to each dead-letter topic (end offsets).",
            ["topic"],
            registry=registry,
        )
        self.generation = Gauge(
            "metrics_generation", "The aggregates generation readers use.", registry=registry
        )
        self.refresh_seconds = Gauge(
            "metrics_gauges_refresh_seconds",
            "How long the last gauge refresh took.",
            registry=registry,
        )


def _set_kpis(gauge: Gauge, totals: Mapping[str, float], service_area: str, channel: str) -> None:
    for kpi in KPIS:
        value = evaluate(kpi, totals).value
        if value is not None:
            gauge.labels(kpi.name, service_area, channel).set(value)


class GaugeRefresher:
    def __init__(
        self,
        store: MetricsStore,
        gauges: KpiGauges,
        *,
        service_areas: frozenset[str],
        topics: tuple[TopicSpec, ...],
        group_id: str,
        kafka: KafkaPositions | None,
        clock: Callable[[], datetime],
        interval_seconds: float,
    ) -> None:
        self._store = store
        self._gauges = gauges
        self._areas = service_areas
        self._topics = topics
        self._group_id = group_id
        self._kafka = kafka
        self._clock = clock
        self._interval = interval_seconds
        self._stopping = asyncio.Event()

    async def refresh(self) -> None:
        started = time.perf_counter()
        gauges = self._gauges
        store = self._store
        generation = await store.live_generation()
        now = self._clock()
        today = DateRange(local_day(now), local_day(now))
        by_area = await store.totals_by(generation, today, "service_area")
        by_channel = await store.totals_by(generation, today, "channel")
        everything: dict[str, float] = {}
        for measures in by_area.values():
            for measure, value in measures.items():
                everything[measure] = everything.get(measure, 0.0) + value
        breaches = {
            scope: await store.measure_totals_by_area(
                generation, complaint_measure(scope, ComplaintMeasure.DEADLINE_BREACHES)
            )
            for scope in Scope
        }
        surges = await store.surges_between(generation, today)
        states = await store.topic_states(generation)
        # No awaits from here on: a scrape never sees half-set gauges.
        gauges.generation.set(generation)
        gauges.kpi_today.clear()
        _set_kpis(gauges.kpi_today, everything, ALL, ALL)
        for area, measures in by_area.items():
            if area in self._areas:
                _set_kpis(gauges.kpi_today, measures, area, ALL)
        for channel, measures in by_channel.items():
            if channel in CHANNELS:
                _set_kpis(gauges.kpi_today, measures, ALL, channel)
        for area in self._areas:
            gauges.breaches.labels(area).set(sum(b.get(area, 0.0) for b in breaches.values()))
            for measure in SURGE_MEASURES:
                gauges.surge_active.labels(area, measure).set(0)
        for surge in surges:
            if surge.service_area in self._areas:
                gauges.surge_active.labels(surge.service_area, surge.measure).set(1)
        for state in states:
            gauges.events_applied.labels(state.topic).set(state.events)
            age = (now - state.last_recorded_at).total_seconds()
            gauges.last_event_age.labels(state.topic).set(max(0.0, age))
        await self._refresh_kafka()
        gauges.refresh_seconds.set(time.perf_counter() - started)

    async def _refresh_kafka(self) -> None:
        if self._kafka is None:
            return
        names = [topic.name for topic in self._topics]
        lag = await self._kafka.lag(self._group_id, names)
        dead = await self._kafka.end_offsets([dead_letter_twin(t).name for t in self._topics])
        for topic, value in lag.items():
            self._gauges.consumer_lag.labels(topic).set(value)
        for topic, partitions in dead.items():
            self._gauges.dead_letters.labels(topic).set(sum(partitions.values()))

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.refresh()
            except Exception as error:
                if is_transient(error):
                    log.warning("gauge refresh waiting: %r", error)
                else:
                    log.exception("gauge refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()
