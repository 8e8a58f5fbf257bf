"""`civicpulse import`: wiring the mapping, the file, the checks and the target together."""

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from civicpulse.importer.mapping import (
    ContactRecordsMapping,
    ContactRoutesMapping,
    MappingError,
    load_mapping,
    personal_data_in,
)
from civicpulse.importer.readers import ReadError, Table, open_table
from civicpulse.importer.report import RejectionReport
from civicpulse.importer.run import Check, ImportSummary, run_import
from civicpulse.importer.senders import (
    ContactRouteSender,
    IntakeHttpSender,
    RawTopicSender,
    Sender,
    SendError,
)
from civicpulse.importer.transform import Prepared, RecordBuilder, Refused, RouteBuilder
from services.intake.domain import Vocabulary
from shared.events.envelope import utc_now
from shared.kafka import producer_options
from shared.settings import ServiceSettings
from shared.vocabulary import VocabularyError, load_service_areas

DRY_RUN_SOURCE = "import"
EXIT_REFUSED_ROWS = 1
EXIT_UNUSABLE = 2


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_columns(table: Table, mapping: ContactRecordsMapping | ContactRoutesMapping) -> None:
    wanted = list(mapping.columns().values())
    if isinstance(mapping, ContactRecordsMapping):
        wanted += mapping.idempotency_key + [follow_up.when for follow_up in mapping.follow_ups]
    missing = sorted(set(wanted) - set(table.header))
    if missing:
        raise MappingError(
            f"the file has no column {', '.join(map(repr, missing))} "
            f"(its columns: {', '.join(table.header)})"
        )
    if isinstance(mapping, ContactRecordsMapping):
        ignored = [column for column in table.header if column and personal_data_in(column)]
        if ignored:
            _say(f"import: personal data columns left unread: {', '.join(ignored)}")


@asynccontextmanager
async def _target(
    args: argparse.Namespace, mapping: ContactRecordsMapping | ContactRoutesMapping
) -> AsyncIterator[Sender | None]:
    if args.dry_run:
        yield None
        return
    if isinstance(mapping, ContactRoutesMapping):
        if not args.feedback_url or not args.api_key:
            raise MappingError("a contact_routes import needs --feedback-url and --api-key")
        async with httpx.AsyncClient(base_url=args.feedback_url, timeout=30) as client:
            yield ContactRouteSender(client, args.api_key)
        return
    if args.kafka:
        if not mapping.source:
            raise MappingError("the raw topic needs `source` in the mapping")
        producer = AIOKafkaProducer(
            **producer_options(ServiceSettings().kafka),  # the CRM principal, say
            client_id="civicpulse-import",
        )
        await producer.start()
        try:
            yield RawTopicSender(producer)
        finally:
            await producer.stop()
        return
    if not args.intake_url or not args.api_key:
        raise MappingError("send with --intake-url and --api-key, or --kafka, or --dry-run")
    async with httpx.AsyncClient(base_url=args.intake_url, timeout=60) as client:
        yield IntakeHttpSender(client, args.api_key)


def _check(args: argparse.Namespace, builder: RecordBuilder | RouteBuilder) -> Check | None:
    """The target's own rules, locally: for dry runs, and for the raw topic (no answers)."""
    if isinstance(builder, RouteBuilder):
        return builder.check_with_feedback if args.dry_run else None
    if not (args.dry_run or args.kafka):
        return None  # intake itself answers, and its vocabulary is the one that counts
    vocabulary = Vocabulary(
        load_service_areas(args.vocabulary or ServiceSettings().vocabulary_file)
    )
    source = builder.mapping.source or DRY_RUN_SOURCE
    records = builder

    def check(prepared: Prepared) -> Refused | None:
        return records.check_with_intake(prepared, vocabulary, source=source, now=utc_now())

    return check


async def _import(args: argparse.Namespace) -> ImportSummary:
    mapping = load_mapping(args.mapping)
    table = open_table(args.file, sheet=mapping.sheet)
    _check_columns(table, mapping)
    builder = (
        RecordBuilder(mapping)
        if isinstance(mapping, ContactRecordsMapping)
        else RouteBuilder(mapping)
    )
    check = _check(args, builder)
    report_path: Path = args.report or args.file.with_name(f"{args.file.stem}.rejected.csv")
    async with _target(args, mapping) as sender:
        with RejectionReport(report_path) as report:
            summary = await run_import(
                table.rows,
                builder,
                report,
                sender=sender,
                check=check,
                batch_size=args.batch_size,
                progress=not args.no_progress,
            )
    _say(f"import: {summary.describe(dry_run=args.dry_run)}")
    if summary.refused:
        _say(f"import: refused rows are listed in {report_path}")
    print(json.dumps({"file": str(args.file), "report": str(report_path), **summary.as_dict()}))
    return summary


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.batch_size <= 1000:
        _say("error: --batch-size must be between 1 and 1000 (intake's batch limit)")
        return EXIT_UNUSABLE
    try:
        summary = asyncio.run(_import(args))
    except (MappingError, ReadError, VocabularyError) as error:
        _say(f"error: {error}")
        return EXIT_UNUSABLE
    except SendError as error:
        _say(f"error: {error} (rows already sent stay; run the import again to finish)")
        return EXIT_UNUSABLE
    return EXIT_REFUSED_ROWS if summary.refused else 0
