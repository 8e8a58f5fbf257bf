"""HTTP plumbing every service shares: `/healthz`, `/metrics` and serving."""

import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI, Response, status
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, TypeAdapter

from shared.settings import ServiceSettings

HEALTH_TIMEOUT_SECONDS = 2.0


class Health(BaseModel):
    status: str
    kafka: bool
    postgres: bool


def add_operational_routes(
    app: FastAPI,
    *,
    broker: KafkaBroker,
    registry: CollectorRegistry,
    pool: Callable[[], asyncpg.Pool | None],
) -> None:
    @app.get(
        "/healthz",
        response_model=Health,
        tags=["operations"],
        summary="Ready when Kafka and PostgreSQL both answer",
        responses={503: {"model": Health, "description": "Kafka or PostgreSQL unreachable."}},
    )
    async def healthz(response: Response) -> Health:
        kafka_ok = broker.running and await broker.ping(timeout=HEALTH_TIMEOUT_SECONDS)
        postgres_ok = await _postgres_answers(pool())
        healthy = kafka_ok and postgres_ok
        if not healthy:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(
            status="ok" if healthy else "unavailable", kafka=kafka_ok, postgres=postgres_ok
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _postgres_answers(pool: asyncpg.Pool | None) -> bool:
    if pool is None:
        return False
    try:
        await pool.fetchval("SELECT 1", timeout=HEALTH_TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return True


def openapi_body_schema(adapter: TypeAdapter[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An OpenAPI request-body schema for `adapter`, and the component schemas it refers to.

    For endpoints that read their body themselves (to answer every error in one
    format) but still document it; pass the second value to
    `add_component_schemas`.
    """
    schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return schema, definitions


def add_component_schemas(app: FastAPI, definitions: dict[str, Any]) -> None:
    """Add schemas to the app's OpenAPI components (FastAPI only adds those it validates)."""
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        document = build_openapi()
        document.setdefault("components", {}).setdefault("schemas", {}).update(definitions)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run until SIGTERM/SIGINT; the lifespan then stops in the common order
    (`shared.supervisor`): consuming, then the outbox relay, then the producers."""
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
    )
