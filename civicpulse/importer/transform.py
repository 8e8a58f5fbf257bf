"""One spreadsheet row -> one raw record (or contact route), or the reasons it cannot be.

Only the mapping's rules live here (columns, value maps, time zones, keys).
Whether a record is acceptable is intake's decision: `check_with_intake` runs
intake's own `read_record`, so a dry run refuses exactly what intake would.
"""

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from civicpulse.importer.mapping import (
    FIELD_TYPES,
    RECORD_MODELS,
    CellValue,
    ContactRecordsMapping,
    ContactRoutesMapping,
    FieldSpec,
)
from civicpulse.importer.readers import Cell, Row
from services.feedback.notifications import ContactRoute
from services.intake.domain import Rejected, Vocabulary, read_record
from shared.events.vocabulary import CUSTOMER_REF_PATTERN


class Reason:
    """Reason codes of the importer's own refusals (intake's are its RejectionReason)."""

    MISSING_VALUE = "missing_value"
    UNMAPPED_VALUE = "unmapped_value"
    BAD_VALUE = "bad_value"
    AMBIGUOUS_TIME = "ambiguous_time"
    NONEXISTENT_TIME = "nonexistent_time"


@dataclass(frozen=True, slots=True)
class CellError:
    column: str
    field: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Refused:
    row: int
    errors: tuple[CellError, ...]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A row ready to send: the raw record, or a contact route with its customer reference."""

    row: int
    document: dict[str, Any]
    columns: Mapping[str, str]  # field -> the column it came from, for the report

    def column_of(self, field: str) -> str:
        return self.columns.get(field.split(".")[0], "")


class _CellRefusedError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


CUSTOMER_REF = re.compile(CUSTOMER_REF_PATTERN)
_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})


def localise(naive: datetime, zone: ZoneInfo, ambiguous: str) -> datetime:
    """A wall-clock time in `zone` as an instant, refusing times that are not one instant.

    In the hour the clocks go back (01:00-02:00 on the last Sunday of October in
    London) a wall time happens twice; in the hour they go forward it never happens.
    """
    earlier = naive.replace(tzinfo=zone, fold=0)
    later = naive.replace(tzinfo=zone, fold=1)
    if earlier.utcoffset() == later.utcoffset():
        return earlier
    if earlier.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise _CellRefusedError(
            Reason.NONEXISTENT_TIME,
            f"{naive:%Y-%m-%d %H:%M} does not exist in {zone.key} (the clocks went forward)",
        )
    if ambiguous == "earlier":
        return earlier
    if ambiguous == "later":
        return later
    raise _CellRefusedError(
        Reason.AMBIGUOUS_TIME,
        f"{naive:%Y-%m-%d %H:%M} happened twice in {zone.key} (the clocks went back); "
        "give the UTC offset, or set `ambiguous_times` in the mapping",
    )


def parse_timestamp(cell: Cell, mapping: ContactRecordsMapping) -> str:
    if isinstance(cell, datetime):
        moment = cell
    elif isinstance(cell, date) and not isinstance(cell, datetime):
        moment = datetime.combine(cell, time())
    elif isinstance(cell, str):
        try:
            moment = (
                datetime.strptime(cell, mapping.date_format)
                if mapping.date_format
                else datetime.fromisoformat(cell)
            )
        except ValueError as error:
            expected = mapping.date_format or "ISO 8601"
            raise _CellRefusedError(
                Reason.BAD_VALUE, f"not a time ({expected}): {error}"
            ) from error
    else:
        raise _CellRefusedError(Reason.BAD_VALUE, f"not a date and time: {cell!r}")
    if moment.tzinfo is None:
        moment = localise(moment, ZoneInfo(mapping.timezone), mapping.ambiguous_times)
    return moment.isoformat()


def _number(value: CellValue, *, integer: bool) -> int | float:
    if isinstance(value, bool):
        raise _CellRefusedError(Reason.BAD_VALUE, f"not a number: {value!r}")
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError as error:
        raise _CellRefusedError(Reason.BAD_VALUE, f"not a number: {value!r}") from error
    if not integer:
        return number
    if not float(number).is_integer():
        raise _CellRefusedError(Reason.BAD_VALUE, f"not a whole number: {value!r}")
    return int(number)


def _boolean(value: CellValue) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _CellRefusedError(Reason.BAD_VALUE, f"not yes or no: {value!r}")


def convert(value: CellValue, kind: str) -> CellValue:
    if kind == "integer":
        return _number(value, integer=True)
    if kind == "number":
        return _number(value, integer=False)
    if kind == "boolean":
        return _boolean(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores 1001 as 1001.0
    return str(value)


class RowReader:
    """Reads the mapped fields of rows, caching each field's value map."""

    def __init__(self, fields: Mapping[str, FieldSpec]) -> None:
        self._fields = fields
        self._lookups = {name: spec.lookup() for name, spec in fields.items()}

    def value(self, row: Row, name: str) -> Cell:
        """The field's cell after its value map; None when the cell is empty."""
        spec = self._fields[name]
        if spec.column is None:
            return spec.value
        cell = row.cells.get(spec.column)
        if cell is None:
            if spec.required:
                raise _CellRefusedError(Reason.MISSING_VALUE, "empty")
            return None
        lookup = self._lookups[name]
        if lookup is None or isinstance(cell, datetime | date | time):
            return cell
        text = convert(cell, "text")
        assert isinstance(text, str)
        mapped = lookup.get(text.strip().casefold())
        if mapped is not None:
            return mapped
        if spec.unmapped == "keep":
            return cell
        known = ", ".join(sorted(map(str, spec.values or {})))
        raise _CellRefusedError(Reason.UNMAPPED_VALUE, f"{text!r} is not in the mapping ({known})")


def _text(cell: Cell) -> str:
    if isinstance(cell, date | time):
        return cell.isoformat()
    return str(convert(cell, "text")) if cell is not None else ""


def idempotency_key(prefix: str, parts: list[str]) -> str:
    """`cdr:C-1001`, or a digest when the values would not make a valid key.

    Deterministic, so the same row imported again carries the same key and
    intake accepts it once. Readable parts never contain `:` nor are empty, so
    the digest form (`prefix::…`) cannot collide with a readable one.
    """
    readable = f"{prefix}:{':'.join(parts)}"
    if all(_KEY_PART.fullmatch(part) for part in parts) and len(readable) <= 128:
        return readable
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()
    return f"{prefix}::{digest[:48]}"


def _refused(row: Row, column: str, name: str, refusal: _CellRefusedError) -> Refused:
    return Refused(row.number, (CellError(column, name, refusal.reason, refusal.message),))


class _RecordSpec:
    """One of the records a row gives, with its fields' readers and columns."""

    def __init__(self, fields: Mapping[str, FieldSpec], when: str | None, suffix: bool) -> None:
        self.fields = fields
        self.when = when
        self.suffix = suffix  # follow-ups add their record type to the row's key
        self.reader = RowReader(fields)
        self.columns = {name: spec.column for name, spec in fields.items() if spec.column}


class RecordBuilder:
    """Builds intake's raw contact records from rows of a `contact_records` export."""

    def __init__(self, mapping: ContactRecordsMapping) -> None:
        self.mapping = mapping
        whens = [None, *(follow_up.when for follow_up in mapping.follow_ups)]
        self._specs = [
            _RecordSpec(fields, when, suffix=index > 0)
            for index, (fields, when) in enumerate(zip(mapping.record_specs(), whens, strict=True))
        ]

    def build(self, row: Row) -> list[Prepared] | Refused:
        """The row's records; a row with any unusable cell is refused as a whole."""
        key_parts, errors = self._key_parts(row)
        records: list[Prepared] = []
        for spec in self._specs:
            if spec.when is not None and row.cells.get(spec.when) is None:
                continue
            built = self._record(row, spec, key_parts)
            if isinstance(built, Prepared):
                records.append(built)
            else:
                errors += built
        if errors:
            return Refused(row.number, tuple(errors))
        return records

    def _key_parts(self, row: Row) -> tuple[list[str], list[CellError]]:
        parts: list[str] = []
        errors: list[CellError] = []
        for column in self.mapping.idempotency_key:
            cell = row.cells.get(column)
            if cell is None:
                errors.append(
                    CellError(column, "idempotency_key", Reason.MISSING_VALUE, "empty key column")
                )
            else:
                parts.append(_text(cell))
        return parts, errors

    def _record(
        self, row: Row, spec: _RecordSpec, key_parts: list[str]
    ) -> Prepared | list[CellError]:
        try:
            record_type = str(spec.reader.value(row, "record_type"))
        except _CellRefusedError as refusal:
            return [
                CellError(
                    spec.columns.get("record_type", ""),
                    "record_type",
                    refusal.reason,
                    refusal.message,
                )
            ]
        model = RECORD_MODELS.get(record_type)
        if model is None:  # a cell read as it is (no value map, or `unmapped: keep`)
            known = ", ".join(sorted(RECORD_MODELS))
            message = f"{record_type!r} is not a record type ({known})"
            return [
                CellError(
                    spec.columns.get("record_type", ""), "record_type", Reason.BAD_VALUE, message
                )
            ]
        document: dict[str, Any] = {"record_type": record_type}
        errors: list[CellError] = []
        for name in spec.fields:
            if name == "record_type" or name not in model.model_fields:
                continue  # e.g. an abandoned call has no channel
            try:
                value = spec.reader.value(row, name)
                if value is None:
                    continue
                kind = FIELD_TYPES.get(name, "text")
                if kind == "timestamp":
                    document[name] = parse_timestamp(value, self.mapping)
                elif isinstance(value, datetime | date | time):
                    raise _CellRefusedError(Reason.BAD_VALUE, f"a date, not a {kind}: {value}")
                else:
                    document[name] = convert(value, kind)
            except _CellRefusedError as refusal:
                column = spec.columns.get(name, "")
                errors.append(CellError(column, name, refusal.reason, refusal.message))
        if errors:
            return errors
        parts = [*key_parts, record_type] if spec.suffix else key_parts
        document["idempotency_key"] = idempotency_key(self.mapping.name, parts)
        if self.mapping.source:
            document["source"] = self.mapping.source
        return Prepared(row.number, document, spec.columns)

    def check_with_intake(
        self, prepared: Prepared, vocabulary: Vocabulary, *, source: str, now: datetime
    ) -> Refused | None:
        """Intake's own verdict on the record, as intake would give it."""
        outcome = read_record(
            prepared.document, vocabulary, authenticated_source=source, recorded_at=now
        )
        if not isinstance(outcome, Rejected):
            return None
        return Refused(
            prepared.row,
            tuple(
                CellError(prepared.column_of(e.field), e.field, outcome.reason.value, e.message)
                for e in outcome.errors
            ),
        )


class RouteBuilder:
    """Builds feedback's contact routes from rows of a `contact_routes` export.

    A preferred channel of `sms` (text, phone, mobile) sends only the mobile
    number when there is one, since feedback uses the email whenever both are given.
    """

    PREFERS_MOBILE = frozenset({"sms", "text", "phone", "mobile", "telephone"})

    def __init__(self, mapping: ContactRoutesMapping) -> None:
        self.mapping = mapping
        self._reader = RowReader(mapping.fields)
        self._columns = mapping.columns()

    def column_of(self, field: str) -> str:
        return self._columns.get(field.split(".")[0], "")

    def build(self, row: Row) -> list[Prepared] | Refused:
        values: dict[str, str] = {}
        errors: list[CellError] = []
        for name in self.mapping.fields:
            try:
                value = self._reader.value(row, name)
                if value is not None:
                    values[name] = _text(value)
            except _CellRefusedError as refusal:
                errors.append(
                    CellError(self.column_of(name), name, refusal.reason, refusal.message)
                )
        if errors:
            return Refused(row.number, tuple(errors))
        preferred = values.pop("preferred_channel", "").casefold()
        if preferred in self.PREFERS_MOBILE and values.get("mobile"):
            values.pop("email", None)
        elif preferred == "email" and values.get("email"):
            values.pop("mobile", None)
        return [Prepared(row.number, values, self._columns)]

    def check_with_feedback(self, prepared: Prepared) -> Refused | None:
        """Feedback's own rules for a contact route (its request model and path pattern)."""
        document = dict(prepared.document)
        customer_ref = document.pop("customer_ref", "")
        errors = []
        if not CUSTOMER_REF.fullmatch(customer_ref):
            errors.append(
                CellError(
                    self.column_of("customer_ref"),
                    "customer_ref",
                    "invalid_record",
                    "use letters, digits and _.:- only, at most 64 characters",
                )
            )
        try:
            ContactRoute.model_validate(document)
        except ValidationError as error:
            for item in error.errors(include_url=False):
                name = ".".join(str(part) for part in item["loc"])
                errors.append(CellError(self.column_of(name), name, "invalid_record", item["msg"]))
        return Refused(prepared.row, tuple(errors)) if errors else None
