"""`civicpulse erase <customer_ref>`: erase a customer in every service, one receipt.

Calls `DELETE /v1/customers/{ref}` on feedback (contact route, unsent messages,
survey comments) and on complaints (officers' free text in the customer's
complaints), then prints one combined receipt: rows deleted per service and
table, and every copy left on a Kafka topic with the date its retention removes
it. Intake and metrics hold no personal data of their own (intake keeps no
customer table; metrics keeps only the pseudonymous reference for the FCR
re-contact check), so they have no endpoint; the copies intake's topics keep
are added to the receipt here. Exit 0 when every service erased; 1 when one
could not (the receipt says which, and erasing again is safe); 2 for a bad ref.
Keys and addresses come from flags or `CIVICPULSE_ERASE_*` variables.
"""

import argparse
import asyncio
import os
import re
import sys
from datetime import UTC, datetime

import httpx
from pydantic import ValidationError

from shared.api_keys import HEADER
from shared.erasure import ErasureReceipt, RemainingCopy, remaining_copy
from shared.events.vocabulary import CUSTOMER_REF_PATTERN
from shared.topics import CONTACTS, CONTACTS_RAW, dead_letter_twin

TIMEOUT_SECONDS = 30.0
SERVICES = {"feedback": "http://127.0.0.1:8003", "complaints": "http://127.0.0.1:8002"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("customer_ref", help="the CRM's pseudonymous customer reference")
    for service, default in SERVICES.items():
        upper = service.upper()
        parser.add_argument(
            f"--{service}-url",
            default=os.environ.get(f"CIVICPULSE_ERASE_{upper}_URL", default),
            help=f"default: CIVICPULSE_ERASE_{upper}_URL or {default}",
        )
        parser.add_argument(
            f"--{service}-api-key",
            default=os.environ.get(f"CIVICPULSE_ERASE_{upper}_API_KEY"),
            help=f"an API key of the {service} service; default: CIVICPULSE_ERASE_{upper}_API_KEY",
        )
    parser.add_argument("--format", choices=("json", "text"), default="json")


def intake_copies(erased_at: datetime) -> list[RemainingCopy]:
    """Intake keeps no table of customers; what it received stays on its topics."""
    return [
        remaining_copy(
            "intake",
            CONTACTS_RAW,
            erased_at,
            personal_data=True,
            note="Contact records as council systems published them, before intake dropped "
            "any name, email, phone or address fields; producers and intake only.",
        ),
        remaining_copy(
            "intake",
            dead_letter_twin(CONTACTS_RAW),
            erased_at,
            personal_data=True,
            note="Raw records intake refused (original bytes); ops principal only.",
        ),
        remaining_copy(
            "intake",
            CONTACTS,
            erased_at,
            personal_data=False,
            note="Canonical contact events, kept for ever for the KPIs: the pseudonymous "
            "customer_ref and case facts only. Metrics keeps the same reference (FCR "
            "re-contact check) and no other personal data.",
        ),
    ]


async def erase(
    args: argparse.Namespace, client: httpx.AsyncClient
) -> tuple[ErasureReceipt, list[str]]:
    now = datetime.now(UTC)
    receipt = ErasureReceipt.of(args.customer_ref, now, [], intake_copies(now))
    failures: list[str] = []
    for service in SERVICES:
        url = getattr(args, f"{service}_url").rstrip("/")
        key = getattr(args, f"{service}_api_key")
        if not key:
            failures.append(f"{service}: no API key (--{service}-api-key)")
            continue
        try:
            response = await client.delete(
                f"{url}/v1/customers/{args.customer_ref}", headers={HEADER: key}
            )
        except httpx.HTTPError as error:
            failures.append(f"{service}: not reached at {url} ({type(error).__name__})")
            continue
        if response.status_code != httpx.codes.OK:
            failures.append(f"{service}: answered {response.status_code} {response.text[:200]}")
            continue
        try:
            receipt = receipt.combined(ErasureReceipt.model_validate_json(response.content))
        except ValidationError:
            failures.append(f"{service}: answered with a receipt not understood")
    return receipt, failures


def as_text(receipt: ErasureReceipt, failures: list[str]) -> str:
    lines = [f"Erasure of {receipt.customer_ref} at {receipt.erased_at.isoformat()}", "Deleted:"]
    lines += [f"  {d.service:<10} {d.table:<45} {d.rows:>6}" for d in receipt.deleted]
    lines.append("Copies left on topics:")
    for copy in receipt.remaining:
        until = "kept for ever" if copy.until is None else f"until {copy.until:%Y-%m-%d %H:%M}Z"
        data = "personal data" if copy.personal_data else "no personal data"
        lines.append(f"  {copy.topic:<42} {until:<28} {data}: {copy.note}")
    lines += [f"NOT ERASED: {failure}" for failure in failures]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not re.fullmatch(CUSTOMER_REF_PATTERN, args.customer_ref):
        print(
            f"customer_ref: {args.customer_ref!r} is not a customer reference "
            f"(pattern {CUSTOMER_REF_PATTERN})",
            file=sys.stderr,
        )
        return 2

    async def call() -> tuple[ErasureReceipt, list[str]]:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            return await erase(args, client)

    receipt, failures = asyncio.run(call())
    if args.format == "text":
        print(as_text(receipt, failures))
    else:
        print(receipt.model_dump_json(indent=2))
        for failure in failures:
            print(f"NOT ERASED: {failure}", file=sys.stderr)
    return 1 if failures else 0
