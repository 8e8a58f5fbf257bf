"""`python -m services.metrics`: run the service, rebuild the aggregates, or make a token."""

import argparse
import asyncio
import json
import secrets
import sys

from services.metrics.settings import MetricsSettings, Role
from shared.api_keys import hash_api_key
from shared.http import configure_logging, serve
from shared.production import exit_if_unsafe


async def _rebuild(settings: MetricsSettings) -> None:
    from services.metrics.handlers import BatchApplier
    from services.metrics.rebuild import rebuild
    from services.metrics.store import MIGRATIONS
    from shared.events.envelope import utc_now
    from shared.postgres import create_pool, migrate

    pool = await create_pool(settings.database_url)
    try:
        await migrate(pool, "metrics", MIGRATIONS)
        applier = BatchApplier(rules=settings.rules, clock=utc_now, publish_surges=False)
        await rebuild(pool, settings.kafka, applier, progress=print)
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.metrics",
        description="CivicPulse metrics: consumes every canonical topic, keeps KPI aggregates "
        "in PostgreSQL and serves them (GET /v1/kpis, /v1/reports/committee, /metrics). "
        "Configured by CIVICPULSE_* environment variables.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the service (the default)")
    commands.add_parser(
        "rebuild",
        help="recompute every aggregate from the start of the canonical topics into a new "
        "generation, then switch the live reads to it (the service may keep running)",
    )
    new_token = commands.add_parser(
        "new-api-token", help="make an API token and print the settings entry with its hash"
    )
    new_token.add_argument("name", help="who the token is for, e.g. finance-team")
    new_token.add_argument("role", choices=[role.value for role in Role])
    args = parser.parse_args(argv)

    if args.command == "new-api-token":
        token = secrets.token_urlsafe(32)
        print(f"API token for {args.name} (give it to them; it is not stored): {token}")
        entry = json.dumps({args.name: {"role": args.role, "hash": hash_api_key(token)}})
        print(f"add to CIVICPULSE_METRICS_API_TOKENS: {entry}")
        return 0

    settings = MetricsSettings()
    exit_if_unsafe(settings, "metrics")
    configure_logging(settings.log_level)
    if args.command == "rebuild":
        asyncio.run(_rebuild(settings))
        return 0

    from services.metrics.app import create_app

    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
