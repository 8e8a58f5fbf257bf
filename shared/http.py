"""HTTP plumbing every service shares: `/healthz`, `/metrics`, body limits and serving."""

import json
import logging
import math
from collections.abc import Callable
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI, HTTPException, Response, status
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import ServiceSettings

HEALTH_TIMEOUT_SECONDS = 2.0


class Health(BaseModel):
    status: str
    kafka: bool
    postgres: bool
    problem: str | None = Field(
        default=None, description="Why the service is not ready though both answer."
    )


def add_operational_routes(
    app: FastAPI,
    *,
    broker: KafkaBroker,
    registry: CollectorRegistry,
    pool: Callable[[], asyncpg.Pool | None],
    problem: Callable[[], str | None] | None = None,
) -> None:
    """`/healthz` and `/metrics`; `problem`, if given, names a reason to report not ready
    (the Notify sender stopped on a refused key)."""
    app.state.prometheus_registry = registry  # for a separate metrics port (shared.operational)

    @app.get(
        "/healthz",
        response_model=Health,
        response_model_exclude_none=True,
        tags=["operations"],
        summary="Ready when Kafka and PostgreSQL both answer",
        responses={
            503: {
                "model": Health,
                "description": "Kafka or PostgreSQL unreachable, or the service stopped "
                "(`problem` says why).",
            }
        },
    )
    async def healthz(response: Response) -> Health:
        kafka_ok = broker.running and await broker.ping(timeout=HEALTH_TIMEOUT_SECONDS)
        postgres_ok = await _postgres_answers(pool())
        stopped = None if problem is None else problem()
        healthy = kafka_ok and postgres_ok and stopped is None
        if not healthy:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(
            status="ok" if healthy else "unavailable",
            kafka=kafka_ok,
            postgres=postgres_ok,
            problem=stopped,
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"description": "Prometheus text exposition format."}},
    )
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


class Problem(BaseModel):
    """Every error these services answer outside a route's own models: FastAPI's shape."""

    detail: str = Field(description="What was wrong, for a person to read.")


PROBLEMS_ON_SECURED = {
    "401": "Missing or unknown credentials.",
}
PROBLEMS_WITH_ROLES = {
    "403": "The credentials' role may not use this.",
}
PROBLEMS_ON_BODIES = {
    "400": "The body could not be read: a bad Content-Length, or bytes that are not JSON.",
    "413": "The body is over the service's CIVICPULSE_HTTP_MAX_BODY_BYTES.",
}


def document_problems(app: FastAPI, *, roles: bool = False) -> None:
    """Document the errors the shared machinery gives, on every operation they can reach.

    401 wherever credentials are required, 403 too when they carry roles
    (`roles`), and 400 and 413 wherever a body is read. A route's own
    documentation of a code is kept.
    """
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        document = build_openapi()  # cached by FastAPI: the changes below are idempotent
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for item in document.get("paths", {}).values():
            for operation in item.values():
                problems: dict[str, str] = {}
                if operation.get("security"):
                    problems |= PROBLEMS_ON_SECURED | (PROBLEMS_WITH_ROLES if roles else {})
                if "requestBody" in operation:
                    problems |= PROBLEMS_ON_BODIES
                responses = operation.setdefault("responses", {})
                for code, description in problems.items():
                    if code in responses:
                        _or_problem(responses[code], description)
                    else:
                        responses[code] = _problem_response(description)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def problem_schema() -> dict[str, Any]:
    """A reference to `Problem`, for routes documenting a problem under their own codes."""
    return {"$ref": "#/components/schemas/Problem"}


def _or_problem(response: dict[str, Any], description: str) -> None:
    """A route's own problem under a code the shared machinery also answers: either."""
    content = response.get("content", {}).get("application/json")
    if content is None or content.get("schema") == problem_schema():
        return
    content["schema"] = {"anyOf": [content["schema"], problem_schema()]}
    response["description"] = f"{response.get('description', '')} Or: {description}".strip()


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": problem_schema()}},
    }


class BodyTooLargeError(HTTPException):
    """A streamed body went past the limit; FastAPI answers it as a 413 problem."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE, detail=f"request body over {max_bytes} bytes"
        )


class BodySizeLimit:
    """ASGI middleware: a body over `max_bytes` is refused with 413 before it is read whole.

    A declared `Content-Length` over the limit is refused before the app runs;
    a body without one (chunked) is counted as it streams in, and the read that
    goes past the limit raises `BodyTooLargeError`. `html_page`, if given, is
    the 413 page for callers that ask for HTML (residents' browsers).
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, html_page: Callable[[], str] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.html_page = html_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(scope, send, status.HTTP_400_BAD_REQUEST, "bad Content-Length")
                return
            if int(declared) > self.max_bytes:
                detail = f"request body over {self.max_bytes} bytes"
                await self._refuse(scope, send, status.HTTP_413_CONTENT_TOO_LARGE, detail)
                return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, counted_receive, send)

    async def _refuse(self, scope: Scope, send: Send, code: int, detail: str) -> None:
        accept = dict(scope["headers"]).get(b"accept", b"")
        response: Response
        if self.html_page is not None and b"text/html" in accept:
            response = HTMLResponse(self.html_page(), status_code=code)
        else:
            response = JSONResponse({"detail": detail}, status_code=code)
        await response(scope, _nothing_more, send)


async def _nothing_more() -> Message:
    return {"type": "http.disconnect"}


def limit_request_bodies(
    app: FastAPI, max_bytes: int, *, html_page: Callable[[], str] | None = None
) -> None:
    """Refuse bodies over `max_bytes` with 413 (CIVICPULSE_HTTP_MAX_BODY_BYTES)."""
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes, html_page=html_page)


class MalformedBodyError(ValueError):
    """A request body that is not a JSON document this service can take."""


def body_refusal(error: ValidationError) -> JSONResponse:
    """A 422 naming each refused field of a parsed body, without the input it held.

    Without the input: a number like 1e999 reads as infinite, which JSON cannot carry
    back (a 500), and a refused body need not be echoed whole.
    """
    return JSONResponse(
        {"detail": error.errors(include_url=False, include_context=False, include_input=False)},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def parse_json_body(body: bytes) -> Any:
    """The JSON document in `body`, or `MalformedBodyError` saying why not.

    Beyond `json.loads`' own errors: nesting deeper than the interpreter can
    recurse, integers past Python's digit limit, `NaN` and `Infinity` (not JSON,
    RFC 8259 section 6, though Python reads them) and numbers too large for a
    float (`1e999` would be read as infinity), and U+0000 anywhere in a string
    (PostgreSQL text and jsonb cannot hold any of these, so they are refused here
    rather than failing later as a server error).
    """
    try:
        document = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise MalformedBodyError("not valid JSON: nested too deeply") from None
    except ValueError as error:  # UnicodeDecodeError, JSONDecodeError, digit limit
        raise MalformedBodyError(f"not valid JSON: {error}") from None
    if _holds_nul(document):
        raise MalformedBodyError("strings may not contain U+0000 (NUL)")
    return document


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is too large a number")
    return number


def _holds_nul(document: Any) -> bool:
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run until SIGTERM/SIGINT; the lifespan then stops in the common order
    (`shared.supervisor`): consuming, then the outbox relay, then the producers."""
    from shared.operational import prepare_for_serving, tune_garbage_collector

    prepare_for_serving(app, settings)
    tune_garbage_collector()
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
        # The client address (access log, feedback's rate limit) comes from a proxy's
        # X-Forwarded-For only when the proxy is one of these.
        proxy_headers=True,
        forwarded_allow_ips=settings.http_forwarded_allow_ips,
    )
