"""What a service's HTTP server exposes besides its API, decided once at serving time.

- `/metrics` (per-area KPIs, breach counts) moves to its own port when
  `CIVICPULSE_METRICS_PORT` is set, so only the monitoring network reaches it;
- `/docs`, `/redoc` and `/openapi.json` are off in production unless
  `CIVICPULSE_API_DOCS_IN_PRODUCTION=true`;
- survey tokens are redacted from the access log: a token in a log is a live
  answer link for whoever reads the log.

It also tunes the process's garbage collector (`tune_garbage_collector`).
"""

import gc
import logging
import re

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, start_http_server
from starlette.routing import BaseRoute

from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
METRICS_PATH = "/metrics"
# /surveys/<token>, /v1/surveys/<token> and /surveys/<token>/opt-out.
SURVEY_TOKEN = re.compile(r"(/surveys/)[^/?#\s]+")
REDACTED = "[redacted]"


def redact_path(path: str) -> str:
    return SURVEY_TOKEN.sub(rf"\g<1>{REDACTED}", path)


class RedactSurveyTokens(logging.Filter):
    """uvicorn's access log record is (client, method, path, http version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            if isinstance(args[2], str):
                args[2] = redact_path(args[2])
                record.args = tuple(args)
        elif isinstance(record.msg, str):
            record.msg = redact_path(record.msg)
        return True


def _without(app: FastAPI, paths: frozenset[str]) -> None:
    kept: list[BaseRoute] = [
        route for route in app.router.routes if getattr(route, "path", None) not in paths
    ]
    app.router.routes[:] = kept


# Container objects allocated before a young-generation collection (CPython: 700).
# A consumer batch allocates a few hundred thousand short-lived ones (records,
# models, dicts, futures) that live until the batch is committed: at 700 each
# batch's objects were traversed many times and promoted, and full collections
# of the whole heap followed. bench.intake_throughput measured intake at 135 us
# of CPU a record with CPython's default and 106 us with this, for a young
# generation of at most a few megabytes.
YOUNG_GENERATION_THRESHOLD = 20_000
OLDER_GENERATION_THRESHOLDS = (20, 20)


def tune_garbage_collector() -> None:
    """Collect the young generation less often (see above); process-wide, so called by
    the service's own process at serving time, and by the benchmarks."""
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *OLDER_GENERATION_THRESHOLDS)


def prepare_for_serving(app: FastAPI, settings: ServiceSettings) -> None:
    """Apply the settings above to an app about to be served."""
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSurveyTokens) for f in access_log.filters):
        access_log.addFilter(RedactSurveyTokens())
    if settings.environment == "production" and not settings.api_docs_in_production:
        _without(app, DOC_PATHS)
        app.openapi_url = app.docs_url = app.redoc_url = None
    registry: CollectorRegistry | None = getattr(app.state, "prometheus_registry", None)
    if settings.metrics_port is not None and registry is not None:
        _without(app, frozenset({METRICS_PATH}))
        start_http_server(settings.metrics_port, addr=settings.http_host, registry=registry)
        log.info("Prometheus metrics on %s:%d", settings.http_host, settings.metrics_port)
