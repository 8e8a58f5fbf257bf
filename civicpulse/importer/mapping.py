"""Import mappings: which column of a council's export fills which field.

A mapping is a YAML file (see `deploy/mappings/` and docs/import.md). Two kinds:
`contact_records` builds intake's raw contact records (RawContactRecord), and
`contact_routes` builds feedback's contact routes, the only place where
personal data (email addresses, mobile numbers) is allowed.
"""

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from services.intake.domain import PERSONAL_DATA_FIELDS, fold
from services.intake.records import (
    RawCallAbandoned,
    RawContactReceived,
    RawContactResolved,
    RawContactTransferred,
    RawRecord,
)

CellValue = str | int | float | bool

# The raw record types a spreadsheet row can become, with the fields each one has.
# (mystery_shop_assessed needs a score per standard: not importable from columns.)
RECORD_MODELS: dict[str, type[RawRecord]] = {
    get_args(model.model_fields["record_type"].annotation)[0]: model
    for model in (RawContactReceived, RawContactTransferred, RawContactResolved, RawCallAbandoned)
}
# Fields the importer fills itself: the key from the key columns, the source from the mapping.
DERIVED_FIELDS = frozenset({"idempotency_key", "source"})
RECORD_FIELDS = (
    frozenset(name for model in RECORD_MODELS.values() for name in model.model_fields)
    - DERIVED_FIELDS
)
ROUTE_FIELDS = frozenset({"customer_ref", "email", "mobile", "preferred_channel"})

# How a cell is read for each field; every other field is text.
FieldType = Literal["text", "integer", "number", "boolean", "timestamp"]
FIELD_TYPES: dict[str, FieldType] = {
    "occurred_at": "timestamp",
    "wait_seconds": "number",
    "transfers": "integer",
    "resolved_at_first_contact": "boolean",
}

# Words in a column name that mean it holds a person's identity or contact details.
_PERSONAL_WORDS = frozenset(
    {"email", "phone", "telephone", "mobile", "address", "postcode", "surname", "forename"}
    | {"dob", "birth", "cli", "msisdn"}
)
_PERSON_WORDS = frozenset(
    {"customer", "caller", "calling", "resident", "first", "last", "full", "given", "contact"}
    | {"person", "applicant", "tenant", "citizen"}
)
_SLUG = r"^[a-z][a-z0-9_-]{0,31}$"


class _MappingLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false, so `Y`, `N`, `Yes`, `No` stay text (value maps)."""


_MappingLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_MappingLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class MappingError(ValueError):
    """The mapping file cannot be used; the message says which entry and why."""


def personal_data_in(column: str) -> str | None:
    """Why a column name looks like personal data, if it does (`Caller Name`, `E-mail`)."""
    folded = fold(column).replace("e_mail", "email")
    words = set(re.split(r"[^a-z0-9]+", folded)) - {""}
    if folded in PERSONAL_DATA_FIELDS or folded == "name":
        return "it is a personal data field"
    if found := words & _PERSONAL_WORDS:
        return f"it names {sorted(found)[0]!r}, which is personal data"
    if "name" in words and words & _PERSON_WORDS:
        return "it is a person's name"
    if "number" in words and words & {"caller", "calling", "customer", "contact"}:
        return "it is a person's phone number"
    return None


class FieldSpec(BaseModel):
    """One field: read from `column` (optionally through `values`), or the constant `value`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = Field(default=None, min_length=1)
    value: CellValue | None = None
    values: dict[str, CellValue] | None = Field(
        default=None, description="Cell text (case and spaces ignored) -> the field's value."
    )
    unmapped: Literal["refuse", "keep"] = Field(
        default="refuse", description="A cell missing from `values`: refuse the row, or keep it."
    )
    required: bool = Field(default=True, description="An empty cell refuses the row.")

    @model_validator(mode="after")
    def _column_or_value(self) -> "FieldSpec":
        if (self.column is None) == (self.value is None):
            raise ValueError("give exactly one of `column` or `value`")
        if self.values is not None and self.column is None:
            raise ValueError("`values` translates a column: give `column` too")
        return self

    def lookup(self) -> dict[str, CellValue] | None:
        """`values` keyed as cells are compared: stripped and case-folded."""
        if self.values is None:
            return None
        return {key.strip().casefold(): value for key, value in self.values.items()}


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=_SLUG, description="Names the export; prefixes every idempotency key."
    )
    description: str = ""
    sheet: str | None = Field(default=None, description="Workbook sheet (default: the first).")
    fields: dict[str, FieldSpec]

    def columns(self) -> dict[str, str]:
        """field -> column, for the fields read from a column."""
        return {name: spec.column for name, spec in self.fields.items() if spec.column}


class FollowUp(BaseModel):
    """A second record from the same row, when its column has a value (a case's resolution)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str = Field(min_length=1, description="Column that must have a value.")
    fields: dict[str, FieldSpec] = Field(
        description="Fields that differ from the row's first record (record_type at least)."
    )


class ContactRecordsMapping(_Common):
    kind: Literal["contact_records"]
    source: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]{0,63}$",
        description="Publishing system, needed on the raw topic (HTTP uses the API key's).",
    )
    timezone: str = Field(default="Europe/London", description="Zone of naive timestamps.")
    date_format: str | None = Field(
        default=None, description="strptime format of text timestamps (default ISO 8601)."
    )
    ambiguous_times: Literal["refuse", "earlier", "later"] = Field(
        default="refuse",
        description="A naive time in the hour clocks go back: refuse it, or take the earlier "
        "(summer time) or later (winter time) of the two instants.",
    )
    idempotency_key: list[str] = Field(
        min_length=1, description="Columns whose values, together, identify a row for good."
    )
    follow_ups: list[FollowUp] = Field(default_factory=list)

    def record_specs(self) -> list[dict[str, FieldSpec]]:
        """The fields of each record a row can give: the first, then each follow-up's."""
        return [self.fields, *({**self.fields, **f.fields} for f in self.follow_ups)]

    def columns(self) -> dict[str, str]:
        every = {}
        for index, fields in enumerate(self.record_specs()):
            for name, spec in fields.items():
                if spec.column:
                    every[f"{index}.{name}"] = spec.column
        return every

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _fields_fit_intake(self) -> "ContactRecordsMapping":
        for index, fields in enumerate(self.record_specs()):
            where = "fields" if index == 0 else f"follow_ups[{index - 1}].fields"
            _check_record_fields(fields, where)
        for column in [
            *self.columns().values(),
            *self.idempotency_key,
            *(f.when for f in self.follow_ups),
        ]:
            if why := personal_data_in(column):
                raise ValueError(
                    f"column {column!r} is refused: {why}. Personal data goes only to "
                    "feedback's contact routes (a `contact_routes` mapping)"
                )
        return self


def _check_record_fields(fields: dict[str, FieldSpec], where: str) -> None:
    unknown = sorted(set(fields) - RECORD_FIELDS)
    if unknown:
        raise ValueError(
            f"{where}: {unknown} are not fields of intake's raw records; "
            f"use: {', '.join(sorted(RECORD_FIELDS))}"
        )
    for required in ("record_type", "contact_id", "occurred_at"):
        if required not in fields:
            raise ValueError(f"{where}: field `{required}` is required")
    record_type = fields["record_type"]
    if record_type.values is not None:
        produced = {str(value) for value in record_type.values.values()}
    else:
        produced = {str(record_type.value)} if record_type.value is not None else set()
    if bad := sorted(produced - set(RECORD_MODELS)):
        raise ValueError(f"{where}: record_type {bad}: use {', '.join(sorted(RECORD_MODELS))}")


class ContactRoutesMapping(_Common):
    kind: Literal["contact_routes"]

    @model_validator(mode="after")
    def _route_fields(self) -> "ContactRoutesMapping":
        if unknown := sorted(set(self.fields) - ROUTE_FIELDS):
            raise ValueError(f"fields {unknown}: use {', '.join(sorted(ROUTE_FIELDS))}")
        if "customer_ref" not in self.fields:
            raise ValueError("field `customer_ref` is required")
        if not {"email", "mobile"} & set(self.fields):
            raise ValueError("map `email` or `mobile` (or both)")
        return self


Mapping = Annotated[ContactRecordsMapping | ContactRoutesMapping, Field(discriminator="kind")]
_MAPPING: TypeAdapter[ContactRecordsMapping | ContactRoutesMapping] = TypeAdapter(Mapping)


def parse_mapping(document: Any) -> ContactRecordsMapping | ContactRoutesMapping:
    try:
        return _MAPPING.validate_python(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'mapping'}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        raise MappingError(problems) from error


def load_mapping(path: Path) -> ContactRecordsMapping | ContactRoutesMapping:
    try:
        document = yaml.load(path.read_text(), Loader=_MappingLoader)  # noqa: S506 (safe)
    except (OSError, yaml.YAMLError) as error:
        raise MappingError(f"cannot read mapping {path}: {error}") from error
    try:
        return parse_mapping(document)
    except MappingError as error:
        raise MappingError(f"{path}: {error}") from error
