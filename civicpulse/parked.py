"""`civicpulse parked list|retry`: the operator's view of parked timers and outbox rows.

A parked item failed every attempt (`shared.parked`); it waits here, with its
error, until someone fixes the cause and retries it. Reads
`CIVICPULSE_DATABASE_URL` (or `--database-url`).
"""

import argparse
import asyncio
import sys

from shared.parked import ParkedKind, list_parked, retry_parked
from shared.postgres import create_pool
from shared.settings import ServiceSettings

SERVICES = ("intake", "complaints", "feedback", "metrics")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{list,retry}")
    listing = actions.add_parser("list", help="list parked timers and outbox rows, oldest first")
    listing.add_argument("--service", choices=SERVICES, help="only this service's items")
    retry = actions.add_parser(
        "retry",
        help="give parked items a fresh attempt budget; the next pass tries them",
        description="Unparks the service's parked items (all, or those named with --id): "
        "the timer scheduler or outbox relay tries them on its next pass, with its full "
        "attempt budget. Fix the cause first, or they park again.",
    )
    retry.add_argument("--service", choices=SERVICES, required=True)
    retry.add_argument("--kind", choices=[kind.value for kind in ParkedKind], default=None)
    retry.add_argument(
        "--id", dest="ids", action="append", default=None, help="a timer or row id (repeatable)"
    )
    for sub in (listing, retry):
        sub.add_argument("--database-url", default=None, help="default: CIVICPULSE_DATABASE_URL")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    pool = await create_pool(args.database_url or ServiceSettings().database_url, max_size=1)
    try:
        async with pool.acquire() as connection:
            if args.action == "list":
                items = await list_parked(connection, args.service)
                for item in items:
                    print(
                        f"{item.service:<11} {item.kind.value:<7} {item.item_id:<28} "
                        f"{item.parked_at:%Y-%m-%d %H:%M:%S} attempts={item.attempts} "
                        f"{item.subject} :: {item.last_error}"
                    )
                print(f"{len(items)} parked", file=sys.stderr)
                return 0
            kind = ParkedKind(args.kind) if args.kind else None
            retried = await retry_parked(connection, args.service, kind=kind, item_ids=args.ids)
            print(f"retrying {retried} parked item(s) of {args.service}")
            return 0 if retried else 1
    finally:
        await pool.close()
