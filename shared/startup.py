"""How every service starts: the parts its `create_app` opens with, and `prepare`.

`Wiring.begin` is each `create_app`'s first line: the settings, the metrics
registry, the broker named after the service, and the clock (tests inject the
registry and the clock through `AppOptions`). The lifespan then calls
`open_pool`, which connects, migrates and makes the topics exist before
anything consumes, and takes its outbox relay and timer scheduler from here.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Generic, Self, TypedDict, TypeVar, Unpack

import asyncpg
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from shared.events.envelope import utc_now
from shared.http import add_operational_routes
from shared.kafka import BulkProducer, ensure_topics, make_broker
from shared.outbox import OutboxMetrics, OutboxRelay
from shared.parked import RetryPolicy
from shared.postgres import create_pool, migrate, migrate_as_owner
from shared.settings import ServiceSettings
from shared.timers import FireTimer, FireTimers, TimerMetrics, TimerScheduler
from shared.topics import ALL_TOPICS

S = TypeVar("S", bound=ServiceSettings)


class AppOptions(TypedDict, total=False):
    """What tests may inject into a `create_app`: the clock and the metrics registry."""

    clock: Callable[[], datetime]
    registry: CollectorRegistry


@dataclass(eq=False)
class Wiring(Generic[S]):
    service: str
    settings: S
    registry: CollectorRegistry
    clock: Callable[[], datetime]
    broker: KafkaBroker
    pool: asyncpg.Pool | None = field(default=None, init=False)

    @classmethod
    def begin(cls, service: str, settings: S, **options: Unpack[AppOptions]) -> Self:
        registry = options.get("registry") or CollectorRegistry()
        return cls(
            service=service,
            settings=settings,
            registry=registry,
            clock=options.get("clock", utc_now),
            broker=make_broker(settings.kafka, client_id=service, registry=registry),
        )

    @cached_property
    def outbox_metrics(self) -> OutboxMetrics:
        """Registered on first use, so a service without an outbox shows no outbox series."""
        return OutboxMetrics(self.registry, self.service)

    @cached_property
    def timer_metrics(self) -> TimerMetrics:
        return TimerMetrics(self.registry, self.service)

    def outbox_relay(self, pool: asyncpg.Pool, producer: BulkProducer | None = None) -> OutboxRelay:
        """The service's relay, with the shared retry and parking rules: through `producer`
        when given (aiokafka's own send, for a high-volume outbox), else the broker."""
        return OutboxRelay(
            pool,
            producer or self.broker,
            self.service,
            metrics=self.outbox_metrics,
            batch_size=self.settings.outbox_batch_size,
            idle_poll_seconds=self.settings.outbox_idle_poll_seconds,
            retry=RetryPolicy.for_outbox(self.settings),
        )

    def timer_scheduler(
        self,
        pool: asyncpg.Pool,
        fire: FireTimer,
        *,
        poll_seconds: float | None = None,
        fire_batch: FireTimers | None = None,
    ) -> TimerScheduler:
        """The service's durable timers, on its clock, with the shared retry and parking rules;
        polled every `poll_seconds`, else CIVICPULSE_TIMER_POLL_SECONDS."""
        return TimerScheduler(
            pool,
            self.service,
            fire,
            clock=self.clock,
            poll_seconds=poll_seconds
            if poll_seconds is not None
            else self.settings.timer_poll_seconds,
            retry=RetryPolicy.for_timers(self.settings),
            metrics=self.timer_metrics,
            fire_batch=fire_batch,
        )

    async def open_pool(self, migrations: Path) -> asyncpg.Pool:
        self.pool = await prepare(self.settings, self.service, migrations)
        return self.pool

    async def close_pool(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()

    def add_operational_routes(self, app: FastAPI) -> None:
        """`/healthz` (Kafka and PostgreSQL) and `/metrics` (this registry)."""
        add_operational_routes(
            app, broker=self.broker, registry=self.registry, pool=lambda: self.pool
        )


async def prepare(settings: ServiceSettings, service: str, migrations: Path) -> asyncpg.Pool:
    """A pool on a migrated database, with every topic created unless ops own them."""
    if settings.migration_database_url:
        await migrate_as_owner(settings.migration_database_url, service, migrations)
    pool = await create_pool(settings.database_url)
    try:
        # With an owner this only checks that nothing is left to apply.
        await migrate(pool, service, migrations)
        if settings.create_topics:
            await ensure_topics(
                settings.kafka,
                ALL_TOPICS,
                replication_factor=settings.topic_replication_factor,
            )
    except BaseException:
        await pool.close()
        raise
    return pool
