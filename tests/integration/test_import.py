"""`civicpulse import` on the real stack: a telephony CSV and a CRM workbook, built here.

Intake and feedback run as operators run them (`python -m services.X`, real HTTP);
the importer runs as its command (`python -m civicpulse import`); metrics counts
the canonical events and answers `GET /v1/kpis`. The expected KPIs come from the
rows this test wrote (each row says whether it should count), never from what
arrived. The day is 27 October 2024, when UK clocks went back at 02:00 BST, so
01:00-01:59 happened twice: a naive time then is refused as ambiguous.
"""

import asyncio
import csv
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openpyxl
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from civicpulse.infra import pick_free_port, scratch_database
from civicpulse.processes import REPO_ROOT, ServiceProcess
from shared.api_keys import hash_api_key
from shared.topics import COMPLAINTS, CONTACTS, CONTACTS_RAW
from tests.support.kafka import end_offsets, new_group_at_end
from tests.support.metrics import MANAGER, RunningMetrics, running_metrics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
DAY = date(2024, 10, 27)
OTHER_DAY = date(2023, 10, 29)  # clocks went back then too
NOW = datetime(2024, 11, 20, 12, tzinfo=UTC)  # the day's FCR window has passed
TELEPHONY_KEY = "import-test-telephony-key-0123456789"
CRM_KEY = "import-test-crm-key-0123456789"
FEEDBACK_KEY = "import-test-feedback-key-0123456789"
MAPPINGS = REPO_ROOT / "deploy" / "mappings"


@dataclass
class Stack:
    intake: ServiceProcess
    feedback: ServiceProcess
    metrics: RunningMetrics
    intake_group: str


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str, database_url: str, topics: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    logs = tmp_path_factory.mktemp("import-services")
    intake_group = await new_group_at_end(kafka_bootstrap, CONTACTS_RAW.name, "test-import-intake")
    common = {
        "CIVICPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CIVICPULSE_DATABASE_URL": database_url,
    }
    # Its own idempotency table: another intake of the session (reading the same raw
    # topic) must not be the one to accept this module's records.
    async with scratch_database(
        database_url, f"import_intake_{uuid.uuid4().hex[:8]}"
    ) as intake_database:
        intake = ServiceProcess(
            "services.intake",
            {
                **common,
                "CIVICPULSE_DATABASE_URL": intake_database,
                "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
                "CIVICPULSE_INTAKE_GROUP_ID": intake_group,
                "CIVICPULSE_INTAKE_API_KEYS": json.dumps(
                    {"telephony": hash_api_key(TELEPHONY_KEY), "crm": hash_api_key(CRM_KEY)}
                ),
            },
            logs / "intake.log",
        )
        feedback = ServiceProcess(
            "services.feedback",
            {
                **common,
                "CIVICPULSE_HTTP_PORT": str(pick_free_port()),
                "CIVICPULSE_FEEDBACK_GROUP_ID": await new_group_at_end(
                    kafka_bootstrap, [CONTACTS.name, COMPLAINTS.name], "test-import-feedback"
                ),
                "CIVICPULSE_FEEDBACK_ALLOW_DEV_SECRET": "true",
                "CIVICPULSE_FEEDBACK_API_KEYS": json.dumps({"crm": hash_api_key(FEEDBACK_KEY)}),
            },
            logs / "feedback.log",
        )
        try:
            for process in (intake, feedback):
                process.start()
            for process in (intake, feedback):
                await asyncio.to_thread(process.wait_healthy)
            async with running_metrics(kafka_bootstrap, database_url, NOW) as metrics:
                yield Stack(intake, feedback, metrics, intake_group)
        finally:
            for process in (intake, feedback):
                process.stop()


# -- the files, and what each row should become ------------------------------------


@dataclass
class Written:
    """A row as written, with the refusal this test expects for it (None: it counts)."""

    cells: dict[str, Any]
    refused: tuple[str, str] | None = None  # (column, reason)
    duplicate: bool = False


def call_rows(prefix: str, day: date = DAY) -> list[Written]:
    """Calls on `day`, the last Sunday of an October: 01:30 happened twice."""

    def call(
        n: int, at: str, queue: str, wait: int, outcome: str, transfers: str = "0"
    ) -> dict[str, Any]:
        answered = outcome == "Answered"
        return {
            "Call ID": f"{prefix}-C{n}",
            "Start Time": f"{day.isoformat()} {at}",
            "Queue": queue,
            "Wait Seconds": str(wait),
            "Outcome": outcome,
            "Transfers": transfers if answered else "",
            "Answering Team": "Customer Services" if answered else "",
            "Caller Number": "07700900123",  # personal data: never read
        }

    rows = [
        Written(call(1, "00:40:00", "Council Tax", 12, "Answered")),
        Written(call(2, "02:10:00", "Bins", 35, "Answered", "1")),
        Written(call(3, "08:59:00", "Housing Repairs", 8, "Answered")),
        Written(call(4, "09:15:00", "Council Tax", 65, "Answered", "2")),
        Written(call(5, "10:30:00", "Planning", 20, "Answered")),
        Written(call(6, "11:45:00", "Bins", 95, "Abandoned")),
        Written(call(7, "12:05:00", "Council Tax", 140, "Abandoned")),
        Written(call(8, "16:20:00", "Benefits", 3, "Answered")),
        Written(call(9, "01:30:00", "Bins", 10, "Answered"), ("Start Time", "ambiguous_time")),
        Written(call(10, "13:00:00", "Parking Fines", 10, "Answered"), ("Queue", "unmapped_value")),
    ]
    rows.append(Written(dict(rows[1].cells), duplicate=True))  # exported twice
    return rows


CASE_COLUMNS = [
    "Case ID",
    "Opened",
    "Channel",
    "Service",
    "Kind",
    "Customer Reference",
    "Customer Email",
    "Resolved At First Contact",
    "Resolved At",
]


def case_rows(prefix: str) -> list[Written]:
    def case(
        n: int,
        opened: datetime,
        channel: str,
        service: str,
        kind: str,
        ref: str,
        fcr: str,
        resolved: datetime | None,
    ) -> dict[str, Any]:
        return {
            "Case ID": f"{prefix}-K{n}",
            "Opened": opened,
            "Channel": channel,
            "Service": service,
            "Kind": kind,
            "Customer Reference": ref,
            "Customer Email": f"resident{n}@example.org",  # personal data: never read
            "Resolved At First Contact": fcr,
            "Resolved At": resolved,
        }

    def at(hour: int, minute: int = 0) -> datetime:
        return datetime(2024, 10, 27, hour, minute)

    rows = [
        Written(case(1, at(9), "Web", "Council Tax", "Enquiry", f"{prefix}-R1", "Y", at(9, 5))),
        Written(case(2, at(10), "Email", "Waste", "Service request", f"{prefix}-R2", "N", None)),
        Written(
            case(3, at(11), "Face to face", "Housing", "Enquiry", f"{prefix}-R3", "Y", at(11, 30))
        ),
        Written(case(4, at(14), "Online", "Planning", "Compliment", f"{prefix}-R4", "N", None)),
        Written(
            case(5, at(1, 20), "Web", "Waste", "Enquiry", f"{prefix}-R5", "N", None),
            ("Opened", "ambiguous_time"),
        ),
        Written(
            case(6, at(15), "Web", "Parking", "Enquiry", f"{prefix}-R6", "N", None),
            ("Service", "unknown_vocabulary"),
        ),
        Written(
            case(7, at(16), "Letter", "Benefits", "Enquiry", "jo@example.org", "N", None),
            ("Customer Reference", "personal_data"),
        ),
    ]
    rows.append(Written(dict(rows[0].cells), duplicate=True))
    return rows


def write_csv(path: Path, rows: list[Written]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].cells))
        writer.writeheader()
        writer.writerows(row.cells for row in rows)


def write_workbook(path: Path, rows: list[Written]) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(CASE_COLUMNS)
    for row in rows:
        sheet.append([row.cells[column] for column in CASE_COLUMNS])
    workbook.save(path)


def expected_refusals(rows: list[Written]) -> set[tuple[int, str, str]]:
    """(spreadsheet row, column, reason): the header is row 1."""
    return {(n, *row.refused) for n, row in enumerate(rows, start=2) if row.refused}


def counted(rows: list[Written]) -> list[dict[str, Any]]:
    return [row.cells for row in rows if row.refused is None and not row.duplicate]


async def import_file(
    path: Path, mapping: str, *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], Path]:
    report = path.with_suffix(".report.csv")
    command = [
        sys.executable, "-m", "civicpulse", "import", str(path),
        "--mapping", str(MAPPINGS / mapping), "--report", str(report), "--no-progress",
        "--batch-size", "4", *args,
    ]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1]), report


def report_lines(report: Path) -> set[tuple[int, str, str]]:
    with report.open(newline="") as handle:
        return {(int(r["row"]), r["column"], r["reason"]) for r in csv.DictReader(handle)}


async def kpis(metrics: RunningMetrics) -> dict[str, dict[str, Any]]:
    response = await metrics.client.get(
        "/v1/kpis", params={"from": DAY.isoformat(), "period": "day"}, headers=MANAGER
    )
    assert response.status_code == 200, response.text
    return {row["kpi"]: row for row in response.json()["kpis"]}


async def until(metrics: RunningMetrics, expected: dict[str, tuple[float, float | None]]) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        rows = await kpis(metrics)
        if {k: (rows[k]["numerator"], rows[k]["denominator"]) for k in expected} == expected:
            return
        await asyncio.sleep(0.5)
    rows = await kpis(metrics)
    assert {k: (rows[k]["numerator"], rows[k]["denominator"]) for k in expected} == expected


async def test_a_call_export_and_a_crm_workbook_import_with_the_expected_kpis(
    stack: Stack, kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = uuid.uuid4().hex[:6]
    calls, cases = call_rows(prefix), case_rows(prefix)
    write_csv(tmp_path / "calls.csv", calls)
    write_workbook(tmp_path / "cases.xlsx", cases)
    intake = ["--intake-url", stack.intake.base_url]

    calls_exit, calls_summary, calls_report = await import_file(
        tmp_path / "calls.csv", "call-detail-records.yaml", *intake, "--api-key", TELEPHONY_KEY
    )
    cases_exit, cases_summary, cases_report = await import_file(
        tmp_path / "cases.xlsx", "crm-cases.yaml", *intake, "--api-key", CRM_KEY
    )

    good_calls, good_cases = counted(calls), counted(cases)
    answered = [c for c in good_calls if c["Outcome"] == "Answered"]
    abandoned = [c for c in good_calls if c["Outcome"] == "Abandoned"]
    waits = sum(int(c["Wait Seconds"]) for c in answered)
    transfers = sum(int(c["Transfers"]) for c in answered)
    resolved = [c for c in good_cases if c["Resolved At"] is not None]
    offered = len(answered) + len(abandoned)
    await until(
        stack.metrics,
        {
            "contacts_received": (len(answered) + len(good_cases), None),
            "abandoned_call_rate": (len(abandoned), offered),
            "average_speed_of_answer": (waits, len(answered)),
            "average_transfers_per_call": (transfers, len(answered)),
            "compliments_received": (sum(c["Kind"] == "Compliment" for c in good_cases), None),
        },
    )
    assert (calls_exit, cases_exit) == (1, 1)  # some rows refused, the rest imported
    assert report_lines(calls_report) == expected_refusals(calls)
    assert report_lines(cases_report) == expected_refusals(cases)
    assert calls_summary["accepted"] == len(good_calls)
    assert cases_summary["accepted"] == len(good_cases) + len(resolved)
    assert (calls_summary["duplicates"], cases_summary["duplicates"]) == (1, 2)

    # The same files again: every record is a duplicate and no event is published.
    before = await end_offsets(kafka_bootstrap, [CONTACTS.name])
    _, again_calls, _ = await import_file(
        tmp_path / "calls.csv", "call-detail-records.yaml", *intake, "--api-key", TELEPHONY_KEY
    )
    _, again_cases, _ = await import_file(
        tmp_path / "cases.xlsx", "crm-cases.yaml", *intake, "--api-key", CRM_KEY
    )

    # Intake publishes before it answers: whatever the re-import published is there now.
    assert await events_of(kafka_bootstrap, prefix, before) == []
    assert (again_calls["accepted"], again_cases["accepted"]) == (0, 0)
    assert again_calls["duplicates"] == len(good_calls) + 1
    assert again_cases["duplicates"] == len(good_cases) + len(resolved) + 2


async def test_a_dry_run_refuses_the_same_rows_as_intake_and_sends_nothing(
    stack: Stack, kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = uuid.uuid4().hex[:6]
    cases = case_rows(prefix)
    write_workbook(tmp_path / "cases.xlsx", cases)
    before = await end_offsets(kafka_bootstrap, [CONTACTS.name])

    exit_code, summary, report = await import_file(
        tmp_path / "cases.xlsx", "crm-cases.yaml", "--dry-run"
    )

    assert exit_code == 1
    assert report_lines(report) == expected_refusals(cases)
    assert summary["delivered"] == 0
    assert await events_of(kafka_bootstrap, prefix, before) == []


async def test_a_mapping_that_reads_a_personal_data_column_is_refused_before_sending(
    stack: Stack, tmp_path: Path
) -> None:
    mapping = (MAPPINGS / "crm-cases.yaml").read_text()
    leaky = tmp_path / "leaky.yaml"
    leaky.write_text(mapping.replace("{column: Customer Reference", "{column: Customer Email"))
    write_workbook(tmp_path / "cases.xlsx", case_rows(uuid.uuid4().hex[:6]))
    command = [
        sys.executable, "-m", "civicpulse", "import", str(tmp_path / "cases.xlsx"),
        "--mapping", str(leaky), "--intake-url", stack.intake.base_url, "--api-key", CRM_KEY,
    ]  # fmt: skip

    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False
    )

    assert done.returncode == 2
    assert "'Customer Email' is refused" in done.stderr
    assert not (tmp_path / "cases.rejected.csv").exists()


async def test_contact_routes_from_the_crm_reach_feedback(
    stack: Stack, database_url: str, tmp_path: Path
) -> None:
    prefix = uuid.uuid4().hex[:6]

    def route(n: int, email: str, mobile: str, preferred: str) -> dict[str, str]:
        return {
            "Customer Reference": f"{prefix}-R{n}",
            "Email": email,
            "Mobile": mobile,
            "Preferred Channel": preferred,
        }

    rows = [
        Written(route(1, "one@example.org", "", "Email")),
        Written(route(2, "two@example.org", "07700 900002", "SMS")),
        Written(route(3, "not an address", "", ""), ("Email", "invalid_record")),
        Written(route(4, "", "", "Email"), ("", "invalid_record")),  # neither route
    ]
    write_csv(tmp_path / "routes.csv", rows)

    exit_code, summary, report = await import_file(
        tmp_path / "routes.csv",
        "crm-contact-routes.yaml",
        "--feedback-url",
        stack.feedback.base_url,
        "--api-key",
        FEEDBACK_KEY,
    )

    connection = await asyncpg.connect(database_url)
    try:
        stored = await connection.fetch(
            "SELECT customer_ref, email, mobile FROM feedback_contact_routes "
            "WHERE customer_ref LIKE $1 ORDER BY customer_ref",
            f"{prefix}-%",
        )
    finally:
        await connection.close()
    assert exit_code == 1
    assert [tuple(r) for r in stored] == [
        (f"{prefix}-R1", "one@example.org", None),
        (f"{prefix}-R2", None, "07700900002"),
    ]
    assert summary["accepted"] == 2
    assert report_lines(report) == expected_refusals(rows)


async def test_routes_need_the_feedback_key(stack: Stack, tmp_path: Path) -> None:
    write_csv(tmp_path / "routes.csv", [Written({"Customer Reference": "R1", "Email": "a@b.org"})])

    exit_code, _, _ = await _import_expecting_failure(
        tmp_path / "routes.csv", stack.feedback.base_url
    )

    assert exit_code == 2


async def _import_expecting_failure(path: Path, url: str) -> tuple[int, str, str]:
    command = [
        sys.executable, "-m", "civicpulse", "import", str(path), "--no-progress",
        "--mapping", str(MAPPINGS / "crm-contact-routes.yaml"),
        "--feedback-url", url, "--api-key", "wrong-key",
    ]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False
    )
    return done.returncode, done.stdout, done.stderr


async def read_between(
    bootstrap: str, topic: str, start: dict[TopicPartition, int], end: dict[TopicPartition, int]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from `start` up to (not including) `end`, by partition."""
    wanted = [tp for tp in end if end[tp] > start.get(tp, 0)]
    if not wanted:
        return []  # nothing new (aiokafka cannot stop a consumer assigned nothing)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(wanted)
        for tp in wanted:
            consumer.seek(tp, start.get(tp, 0))
        deadline = asyncio.get_running_loop().time() + 30
        while [tp for tp in wanted if await consumer.position(tp) < end[tp]]:
            assert asyncio.get_running_loop().time() < deadline, "topic not read to its end"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records += [
                    r for r in batch if r.offset < end[TopicPartition(r.topic, r.partition)]
                ]
    finally:
        await consumer.stop()
    return records


async def events_of(
    bootstrap: str, prefix: str, start: dict[TopicPartition, int]
) -> list[dict[str, Any]]:
    """Canonical contact events about this test's contacts, from `start` to the end now.

    Other tests' intakes may publish meanwhile: only this test's ids count.
    """
    end = await end_offsets(bootstrap, [CONTACTS.name])
    records = await read_between(bootstrap, CONTACTS.name, start, end)
    events = [json.loads(record.value) for record in records if record.value]
    return [event for event in events if str(event.get("contact_id", "")).startswith(prefix)]


async def intake_has_consumed(bootstrap: str, group: str, end: dict[TopicPartition, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            if all(tp in committed and committed[tp].offset >= end[tp] for tp in end if end[tp]):
                return
            assert asyncio.get_running_loop().time() < deadline, f"intake stuck: {committed}"
            await asyncio.sleep(0.3)
    finally:
        await admin.close()


async def test_an_import_to_the_raw_topic_is_keyed_by_contact_and_published_once(
    stack: Stack, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Checked with intake's own rules before sending (the topic answers nothing).

    Other intakes of the test session may read the raw topic too and publish the same
    events again, under the same deterministic event ids that consumers deduplicate:
    so the canonical topic must hold one event id per call, and the intake under
    test (with its own idempotency table) must count each call accepted once and the
    repeated row as a duplicate.
    """
    prefix = uuid.uuid4().hex[:6]
    calls = call_rows(prefix, OTHER_DAY)  # its events stay out of DAY's KPIs
    write_csv(tmp_path / "calls.csv", calls)
    counted_before = await kafka_outcomes(stack.intake)
    raw_before = await end_offsets(kafka_bootstrap, [CONTACTS_RAW.name])
    events_before = await end_offsets(kafka_bootstrap, [CONTACTS.name])

    exit_code, summary, report = await import_file(
        tmp_path / "calls.csv",
        "call-detail-records.yaml",
        "--kafka",
        env={"CIVICPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )
    raw_after = await end_offsets(kafka_bootstrap, [CONTACTS_RAW.name])
    await intake_has_consumed(kafka_bootstrap, stack.intake_group, raw_after)
    events_after = await end_offsets(kafka_bootstrap, [CONTACTS.name])
    counted_after = await kafka_outcomes(stack.intake)

    sent = [r for r in await read_between(kafka_bootstrap, CONTACTS_RAW.name, raw_before, raw_after)
            if r.key and r.key.decode().startswith(prefix)]  # fmt: skip
    events = [
        json.loads(r.value)
        for r in await read_between(kafka_bootstrap, CONTACTS.name, events_before, events_after)
    ]
    event_ids: dict[str, set[str]] = {}
    for event in events:
        if event["contact_id"].startswith(prefix):
            event_ids.setdefault(event["contact_id"], set()).add(event["event_id"])
    good = [c["Call ID"] for c in counted(calls)]
    assert exit_code == 1
    assert report_lines(report) == expected_refusals(calls)
    assert summary["delivered"] == len(good) + 1  # the duplicate row is sent; intake drops it
    assert all(json.loads(r.value)["contact_id"] == r.key.decode() for r in sent if r.key)
    assert sorted(r.key.decode() for r in sent if r.key) == sorted(
        [*good, calls[-1].cells["Call ID"]]
    )
    assert sorted(event_ids) == sorted(good)
    assert all(len(ids) == 1 for ids in event_ids.values())
    assert counted_after - counted_before == Outcomes(accepted=len(good), duplicates=1)


@dataclass(frozen=True)
class Outcomes:
    accepted: float
    duplicates: float

    def __sub__(self, other: "Outcomes") -> "Outcomes":
        return Outcomes(self.accepted - other.accepted, self.duplicates - other.duplicates)


async def kafka_outcomes(intake: ServiceProcess) -> Outcomes:
    """What the intake under test counted from the raw topic, from its /metrics."""
    async with httpx.AsyncClient(base_url=intake.base_url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    totals = {"intake_records_accepted": 0.0, "intake_records_duplicate": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name in totals:
            totals[family.name] += sum(
                sample.value
                for sample in family.samples
                if sample.name.endswith("_total") and sample.labels.get("via") == "kafka"
            )
    return Outcomes(totals["intake_records_accepted"], totals["intake_records_duplicate"])
