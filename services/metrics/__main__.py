"""`python -m services.metrics`: run the service, rebuild the aggregates, or make a token."""

import argparse
import asyncio
import json
import secrets
import sys

from services.metrics.settings import SERVICE, MetricsSettings, Role
from shared.api_keys import hash_api_key
from shared.commands import Command, OfflineCommand, service_main


async def _rebuild(settings: MetricsSettings) -> None:
    from services.metrics.applier import BatchApplier
    from services.metrics.rebuild import rebuild
    from services.metrics.store import MIGRATIONS
    from shared.events.envelope import utc_now
    from shared.postgres import create_pool, migrate

    pool = await create_pool(settings.database_url)
    try:
        await migrate(pool, SERVICE, MIGRATIONS)
        applier = BatchApplier(rules=settings.rules, clock=utc_now, publish_surges=False)
        await rebuild(
            pool, settings.kafka, applier, progress=print, batch=settings.metrics_rebuild_batch
        )
    finally:
        await pool.close()


def rebuild(_: argparse.Namespace, settings: MetricsSettings) -> int:
    asyncio.run(_rebuild(settings))
    return 0


def token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="who the token is for, e.g. finance-team")
    parser.add_argument("role", choices=[role.value for role in Role])


def new_api_token(args: argparse.Namespace) -> int:
    token = secrets.token_urlsafe(32)
    print(f"API token for {args.name} (give it to them; it is not stored): {token}")
    entry = json.dumps({args.name: {"role": args.role, "hash": hash_api_key(token)}})
    print(f"add to CIVICPULSE_METRICS_API_TOKENS: {entry}")
    return 0


main = service_main(
    service=SERVICE,
    description="CivicPulse metrics: consumes every canonical topic, keeps KPI aggregates "
    "in PostgreSQL and serves them (GET /v1/kpis, /v1/reports/committee, /metrics). "
    "Configured by CIVICPULSE_* environment variables.",
    settings=MetricsSettings,
    app="services.metrics.app:create_app",
    commands=[
        Command(
            "rebuild",
            "recompute every aggregate from the start of the canonical topics into a new "
            "generation, then switch the live reads to it (the service may keep running)",
            rebuild,
        )
    ],
    offline=[
        OfflineCommand(
            "new-api-token",
            "make an API token and print the settings entry with its hash",
            new_api_token,
            token_arguments,
        )
    ],
)

if __name__ == "__main__":
    sys.exit(main(None))
