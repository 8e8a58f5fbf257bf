"""`civicpulse import`: mappings, time zones, keys and intake's verdicts, without a network."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicpulse.cli import build_parser
from civicpulse.importer import senders
from civicpulse.importer.mapping import (
    ContactRecordsMapping,
    ContactRoutesMapping,
    MappingError,
    load_mapping,
    parse_mapping,
    personal_data_in,
)
from civicpulse.importer.readers import ReadError, Row, open_table
from civicpulse.importer.senders import IntakeHttpSender, SendError
from civicpulse.importer.transform import (
    Prepared,
    RecordBuilder,
    Refused,
    RouteBuilder,
    _CellRefusedError,
    idempotency_key,
    localise,
)
from services.intake.domain import Vocabulary
from shared.settings import DEFAULT_VOCABULARY_FILE
from shared.vocabulary import load_service_areas

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "deploy" / "mappings"
LONDON = ZoneInfo("Europe/London")
VOCABULARY = Vocabulary(load_service_areas(DEFAULT_VOCABULARY_FILE))
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def cdr() -> ContactRecordsMapping:
    mapping = load_mapping(MAPPINGS / "call-detail-records.yaml")
    assert isinstance(mapping, ContactRecordsMapping)
    return mapping


def crm() -> ContactRecordsMapping:
    mapping = load_mapping(MAPPINGS / "crm-cases.yaml")
    assert isinstance(mapping, ContactRecordsMapping)
    return mapping


def call(**cells: Any) -> Row:
    row: dict[str, Any] = {
        "Call ID": "C-1",
        "Start Time": "2025-01-15 09:30:00",
        "Queue": "Council Tax",
        "Wait Seconds": "12",
        "Outcome": "Answered",
        "Transfers": "1",
        "Answering Team": "Customer Services",
    }
    row.update(cells)
    return Row(2, row)


def built(builder: RecordBuilder, row: Row) -> list[Prepared]:
    result = builder.build(row)
    assert not isinstance(result, Refused), result
    return result


def refusal(builder: RecordBuilder, row: Row) -> list[tuple[str, str, str]]:
    result = builder.build(row)
    assert isinstance(result, Refused), result
    return [(e.column, e.field, e.reason) for e in result.errors]


# -- time zones --------------------------------------------------------------------


def test_a_time_in_the_repeated_october_hour_is_refused_as_ambiguous() -> None:
    """UK clocks go back at 02:00 BST on the last Sunday of October: 01:00-01:59 happens twice."""
    with pytest.raises(_CellRefusedError) as refused:
        localise(datetime(2024, 10, 27, 1, 30), LONDON, "refuse")

    assert refused.value.reason == "ambiguous_time"


def test_the_mapping_can_say_which_of_the_two_october_instants_it_means() -> None:
    naive = datetime(2024, 10, 27, 1, 30)

    earlier = localise(naive, LONDON, "earlier").astimezone(UTC)
    later = localise(naive, LONDON, "later").astimezone(UTC)

    assert earlier == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # still BST (+01:00)
    assert later == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)  # GMT again


def test_a_time_in_the_skipped_march_hour_does_not_exist() -> None:
    """UK clocks go forward at 01:00 GMT on the last Sunday of March: 01:00-01:59 never happens."""
    with pytest.raises(_CellRefusedError) as refused:
        localise(datetime(2024, 3, 31, 1, 30), LONDON, "earlier")

    assert refused.value.reason == "nonexistent_time"


def test_ordinary_summer_and_winter_times_get_their_own_offsets() -> None:
    summer = localise(datetime(2025, 7, 1, 9, 0), LONDON, "refuse")
    winter = localise(datetime(2025, 1, 6, 9, 0), LONDON, "refuse")

    assert summer.isoformat() == "2025-07-01T09:00:00+01:00"
    assert winter.isoformat() == "2025-01-06T09:00:00+00:00"


def test_a_timestamp_with_its_own_offset_is_kept_as_it_is() -> None:
    mapping = cdr().model_copy(update={"date_format": None})
    row = call(**{"Start Time": "2024-10-27T01:30:00+00:00"})

    [record] = built(RecordBuilder(mapping), row)

    assert record.document["occurred_at"] == "2024-10-27T01:30:00+00:00"


# -- mappings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "column",
    ["Email", "E-mail Address", "Caller Name", "Customer Name", "Postcode", "Mobile", "CLI"],
)
def test_personal_data_columns_are_recognised(column: str) -> None:
    assert personal_data_in(column) is not None


@pytest.mark.parametrize("column", ["Queue Name", "Call ID", "Answering Team", "Service"])
def test_ordinary_columns_are_not_personal_data(column: str) -> None:
    assert personal_data_in(column) is None


def _records_mapping(**fields: Any) -> dict[str, Any]:
    return {
        "kind": "contact_records",
        "name": "test",
        "idempotency_key": ["ID"],
        "fields": {
            "record_type": {"value": "contact_received"},
            "contact_id": {"column": "ID"},
            "occurred_at": {"column": "When"},
            **fields,
        },
    }


def test_a_contact_records_mapping_refuses_a_personal_data_column() -> None:
    document = _records_mapping(customer_ref={"column": "Customer Email"})

    with pytest.raises(MappingError, match=r"Customer Email.*contact_routes"):
        parse_mapping(document)


def test_a_contact_routes_mapping_takes_emails_and_mobiles() -> None:
    mapping = load_mapping(MAPPINGS / "crm-contact-routes.yaml")

    assert isinstance(mapping, ContactRoutesMapping)
    assert mapping.columns()["email"] == "Email"


def test_a_mapping_naming_a_field_intake_does_not_have_is_refused() -> None:
    with pytest.raises(MappingError, match="not fields of intake's raw records"):
        parse_mapping(_records_mapping(queue_name={"column": "Queue"}))


def test_a_mapping_producing_an_unknown_record_type_is_refused() -> None:
    document = _records_mapping()
    document["fields"]["record_type"] = {"column": "T", "values": {"A": "phone_call"}}

    with pytest.raises(MappingError, match="phone_call"):
        parse_mapping(document)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(MappingError, match="Europe/Londres"):
        parse_mapping({**_records_mapping(), "timezone": "Europe/Londres"})


def test_yes_and_no_in_a_value_map_stay_text(tmp_path: Path) -> None:
    """YAML 1.1 would read Yes/No as booleans, losing the key a cell is compared with."""
    mapping = crm()

    values = mapping.fields["resolved_at_first_contact"].values

    assert values == {"Y": True, "N": False, "Yes": True, "No": False}


@pytest.mark.parametrize("path", sorted(MAPPINGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_mapping_loads_and_its_columns_are_documented(path: Path) -> None:
    mapping = load_mapping(path)
    guide = (REPO / "docs" / "import.md").read_text()

    columns = set(mapping.columns().values())
    if isinstance(mapping, ContactRecordsMapping):
        columns |= set(mapping.idempotency_key) | {f.when for f in mapping.follow_ups}
    assert columns
    assert [c for c in sorted(columns) if f"`{c}`" not in guide] == []


# -- rows to records ---------------------------------------------------------------


def test_an_answered_call_becomes_a_phone_contact_with_its_wait_and_team() -> None:
    [record] = built(RecordBuilder(cdr()), call())

    assert record.document == {
        "record_type": "contact_received",
        "contact_id": "C-1",
        "occurred_at": "2025-01-15T09:30:00+00:00",
        "channel": "phone",
        "kind": "enquiry",
        "service_area": "council_tax",
        "wait_seconds": 12.0,
        "transfers": 1,
        "answered_by_team": "customer_services",
        "idempotency_key": "cdr:C-1",
        "source": "telephony",
    }


def test_an_abandoned_call_carries_only_the_fields_an_abandoned_call_has() -> None:
    row = call(Outcome="abandoned", Transfers=None, **{"Answering Team": None})

    [record] = built(RecordBuilder(cdr()), row)

    assert record.document["record_type"] == "call_abandoned"
    assert not {"channel", "kind", "transfers"} & set(record.document)
    assert (
        RecordBuilder(cdr()).check_with_intake(record, VOCABULARY, source="telephony", now=NOW)
        is None
    )


def test_an_unknown_queue_is_refused_naming_its_column() -> None:
    assert refusal(RecordBuilder(cdr()), call(Queue="Parking")) == [
        ("Queue", "service_area", "unmapped_value")
    ]


def test_every_bad_cell_of_a_row_is_reported_together() -> None:
    row = call(**{"Wait Seconds": "soon", "Start Time": "2024-10-27 01:15:00", "Call ID": None})

    assert sorted(refusal(RecordBuilder(cdr()), row)) == [
        ("Call ID", "contact_id", "missing_value"),
        ("Call ID", "idempotency_key", "missing_value"),
        ("Start Time", "occurred_at", "ambiguous_time"),
        ("Wait Seconds", "wait_seconds", "bad_value"),
    ]


def _case(**cells: Any) -> Row:
    row: dict[str, Any] = {
        "Case ID": "CASE-77",
        "Opened": "03/02/2025 10:15",
        "Channel": "Web",
        "Service": "Council Tax",
        "Kind": "Service request",
        "Customer Reference": "CUST-1",
        "Resolved At First Contact": "N",
        "Resolved At": "04/02/2025 16:00",
    }
    row.update(cells)
    return Row(5, row)


def test_a_resolved_case_gives_a_received_and_a_resolved_record_with_their_own_keys() -> None:
    received, resolved = built(RecordBuilder(crm()), _case())

    assert received.document["record_type"] == "contact_received"
    assert resolved.document["record_type"] == "contact_resolved"
    assert resolved.document["occurred_at"] == "2025-02-04T16:00:00+00:00"
    assert received.document["idempotency_key"] != resolved.document["idempotency_key"]
    assert received.document["resolved_at_first_contact"] is False
    for record in (received, resolved):
        assert (
            RecordBuilder(crm()).check_with_intake(record, VOCABULARY, source="crm", now=NOW)
            is None
        )


def test_an_open_case_gives_only_its_received_record() -> None:
    [received] = built(RecordBuilder(crm()), _case(**{"Resolved At": None}))

    assert received.document["record_type"] == "contact_received"


def test_intake_s_own_rules_refuse_what_intake_would_naming_the_column() -> None:
    """DOMAIN.md: unknown values are rejected with a clear error, not silently mapped."""
    builder = RecordBuilder(crm())
    [record] = built(builder, _case(Service="Parking", **{"Resolved At": None}))

    refused = builder.check_with_intake(record, VOCABULARY, source="crm", now=NOW)

    assert refused is not None
    assert [(e.column, e.field, e.reason) for e in refused.errors] == [
        ("Service", "service_area", "unknown_vocabulary")
    ]


def test_an_email_address_as_customer_reference_is_refused_as_personal_data() -> None:
    builder = RecordBuilder(crm())
    [record] = built(
        builder, _case(**{"Customer Reference": "jo@example.org", "Resolved At": None})
    )

    refused = builder.check_with_intake(record, VOCABULARY, source="crm", now=NOW)

    assert refused is not None
    assert refused.errors[0].reason == "personal_data"
    assert refused.errors[0].column == "Customer Reference"


def test_keys_are_the_same_for_the_same_values_and_differ_for_different_ones() -> None:
    assert idempotency_key("cdr", ["C-1"]) == "cdr:C-1"
    assert idempotency_key("crm", ["CASE 77"]) == idempotency_key("crm", ["CASE 77"])
    assert idempotency_key("crm", ["CASE 77"]).startswith("crm::")
    assert idempotency_key("x", ["a b", "c"]) != idempotency_key("x", ["a", "b c"])


def test_a_preferred_sms_route_sends_only_the_mobile() -> None:
    mapping = load_mapping(MAPPINGS / "crm-contact-routes.yaml")
    assert isinstance(mapping, ContactRoutesMapping)
    row = Row(
        2,
        {
            "Customer Reference": "CUST-1",
            "Email": "jo@example.org",
            "Mobile": "07700 900123",
            "Preferred Channel": "SMS",
        },
    )

    [route] = RouteBuilder(mapping).build(row)  # type: ignore[misc]

    assert route.document == {"customer_ref": "CUST-1", "mobile": "07700 900123"}


# -- reading and sending -----------------------------------------------------------


def test_csv_rows_are_numbered_as_the_spreadsheet_shows_them(tmp_path: Path) -> None:
    path = tmp_path / "calls.csv"
    path.write_text("Call ID,Queue\nC-1,Bins\n\nC-2, Planning \n", encoding="utf-8-sig")

    table = open_table(path)

    assert [(row.number, row.cells) for row in table.rows] == [
        (2, {"Call ID": "C-1", "Queue": "Bins"}),
        (4, {"Call ID": "C-2", "Queue": "Planning"}),
    ]


async def test_a_422_batch_is_sent_again_without_its_failing_records() -> None:
    """Intake takes a batch all or nothing and names the failing records by position."""
    bodies: list[list[dict[str, Any]]] = []

    def intake(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        bad = [i for i, record in enumerate(body) if record["service_area"] == "parking"]
        if bad:
            detail = [
                {
                    "record": i,
                    "field": "service_area",
                    "reason": "unknown_vocabulary",
                    "message": "no",
                }
                for i in bad
            ]
            return httpx.Response(422, json={"detail": detail})
        return httpx.Response(202, json={"accepted": len(body), "duplicates": 0, "results": []})

    columns = {"service_area": "Queue"}
    batch = [
        Prepared(row, {"service_area": area}, columns)
        for row, area in ((2, "waste"), (3, "parking"), (4, "housing"))
    ]
    transport = httpx.MockTransport(intake)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        sent = await IntakeHttpSender(client, "key").send(batch)

    assert [len(body) for body in bodies] == [3, 2]
    assert (sent.accepted, sent.delivered) == (2, 2)
    assert [(r.row, r.errors[0].column, r.errors[0].reason) for r in sent.refused] == [
        (3, "Queue", "unknown_vocabulary")
    ]


def test_a_record_type_read_as_it_is_must_be_one_intake_knows() -> None:
    document = _records_mapping()
    document["fields"]["record_type"] = {"column": "Type"}
    builder = RecordBuilder(parse_mapping(document))  # type: ignore[arg-type]
    row = Row(2, {"ID": "X-1", "When": "2025-01-06T09:00:00+00:00", "Type": "phone_call"})

    assert refusal(builder, row) == [("Type", "record_type", "bad_value")]


def test_a_workbook_s_numbers_and_dates_are_read_as_their_cells(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["Call ID", "Start Time", "Queue", "Wait Seconds", "Outcome", "Transfers"])
    sheet.append([1001, datetime(2025, 7, 1, 9, 30), "Bins", 12.5, "Answered", 1.0])
    workbook.save(tmp_path / "calls.xlsx")

    [row] = list(open_table(tmp_path / "calls.xlsx").rows)
    [record] = built(RecordBuilder(cdr()), Row(row.number, {**row.cells, "Answering Team": None}))

    assert record.document["contact_id"] == "1001"
    assert record.document["occurred_at"] == "2025-07-01T09:30:00+01:00"
    assert (record.document["wait_seconds"], record.document["transfers"]) == (12.5, 1)


def test_a_workbook_s_rows_keep_the_sheet_s_numbers_below_blank_rows(tmp_path: Path) -> None:
    """A rejection report names the row a clerk sees in Excel, even when the export has
    blank rows above its header or between its rows."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["A3"], sheet["B3"] = "Call ID", "Queue"
    sheet["A4"], sheet["B4"] = "C-1", "Bins"
    sheet["A6"], sheet["B6"] = "C-2", "Planning"
    workbook.save(tmp_path / "calls.xlsx")

    table = open_table(tmp_path / "calls.xlsx")

    assert table.header == ["Call ID", "Queue"]
    assert [(row.number, row.cells["Call ID"]) for row in table.rows] == [(4, "C-1"), (6, "C-2")]


def test_a_file_that_is_not_a_workbook_is_refused_as_unreadable(tmp_path: Path) -> None:
    (tmp_path / "calls.xlsx").write_bytes(b"not a zip file")

    with pytest.raises(ReadError, match="cannot open workbook"):
        open_table(tmp_path / "calls.xlsx")


def test_a_csv_with_a_repeated_column_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "calls.csv").write_text("Call ID,Queue,Queue\nC-1,Bins,Bins\n")

    with pytest.raises(ReadError, match="more than once: Queue"):
        open_table(tmp_path / "calls.csv")


async def test_an_unreachable_intake_stops_the_import_with_a_send_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts = []
    monkeypatch.setattr(senders, "FIRST_RETRY_SECONDS", 0.0)

    def down(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("refused", request=request)

    transport = httpx.MockTransport(down)
    batch = [Prepared(2, {"service_area": "waste"}, {})]
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        sender = IntakeHttpSender(client, "key")
        with pytest.raises(SendError, match="cannot reach"):
            await sender.send(batch)

    assert len(attempts) == senders.ATTEMPTS  # safe to repeat: keys are deterministic


CELLS = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(call().cells)), CELLS))
def test_any_cells_give_records_or_reasons_never_an_exception(cells: dict[str, Any]) -> None:
    """Hostile input: every row ends as records intake judges, or a refusal with reasons."""
    builder = RecordBuilder(cdr())

    result = builder.build(call(**cells))

    if isinstance(result, Refused):
        assert result.errors
        assert all(error.reason and error.message for error in result.errors)
    else:
        for record in result:
            verdict = builder.check_with_intake(record, VOCABULARY, source="telephony", now=NOW)
            assert verdict is None or verdict.errors


def test_a_dry_run_of_contact_routes_uses_feedback_s_own_rules() -> None:
    mapping = load_mapping(MAPPINGS / "crm-contact-routes.yaml")
    assert isinstance(mapping, ContactRoutesMapping)
    builder = RouteBuilder(mapping)
    row = Row(7, {"Customer Reference": "CUST 1", "Email": "nobody", "Mobile": "01632 960000"})

    [route] = builder.build(row)  # type: ignore[misc]
    refused = builder.check_with_feedback(route)

    assert refused is not None
    assert sorted((e.column, e.field) for e in refused.errors) == [
        ("Customer Reference", "customer_ref"),
        ("Email", "email"),
        ("Mobile", "mobile"),  # a landline: feedback texts UK mobiles only
    ]


def test_import_help_explains_the_mapping_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["import", "--help"])

    text = capsys.readouterr().out
    for entry in ("kind: contact_records", "idempotency_key", "ambiguous_times", "values"):
        assert entry in text
    assert "docs/import.md" in text
