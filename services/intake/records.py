"""The contact records other council systems send to intake.

This is intake's public input contract: flat JSON records on the raw topic
or in `POST /v1/contacts`, one `record_type` per canonical contact event.
Its JSON Schema is exported to `shared/schemas/RawContactRecord.json`.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.contacts import Team, WaitSeconds
from shared.events.envelope import UtcDatetime
from shared.events.vocabulary import Identifier, Slug

MAX_HTTP_BATCH = 1000

# Checked by intake's rules rather than here, so that contact details sent in
# its place are refused as personal data, not as a badly formed reference.
LooseCustomerRef = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        description="Pseudonymous customer reference from the CRM (letters, digits, `_.:-`, "
        "at most 64 characters). Never a name, email address or phone number.",
        examples=["CUST-000123"],
    ),
]

LooseVocabulary = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="A vocabulary value; case, spaces and hyphens are folded "
        "(`Face-to-face` is read as `face_to_face`), unknown values are rejected.",
    ),
]


class RawRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    idempotency_key: Identifier = Field(
        description="The publisher's unique key for this record; a record sent again with "
        "the same key (from the same source) is accepted once.",
    )
    source: (
        Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")] | None
    ) = Field(
        default=None,
        description="Publishing system. Required on the raw topic; over HTTP it is the "
        "authenticated caller's system.",
        examples=["crm", "telephony"],
    )
    contact_id: Identifier
    occurred_at: UtcDatetime = Field(
        description="When it happened, with a UTC offset (e.g. `2026-01-12T09:30:00+00:00`). "
        "Refused as `occurred_in_future` when more than `CIVICPULSE_MAX_CLOCK_SKEW_SECONDS` "
        "ahead of intake's clock, and as `occurred_too_early` before "
        "`CIVICPULSE_EARLIEST_OCCURRED_AT`."
    )
    correlation_id: Identifier | None = None


class RawContactReceived(RawRecord):
    record_type: Literal["contact_received"]
    channel: LooseVocabulary
    service_area: LooseVocabulary
    kind: LooseVocabulary
    customer_ref: LooseCustomerRef | None = None
    answered_by_team: Team | None = None
    transfers: int = Field(default=0, ge=0, le=50)
    resolved_at_first_contact: bool = False
    wait_seconds: WaitSeconds | None = None


class RawContactTransferred(RawRecord):
    record_type: Literal["contact_transferred"]
    from_team: Team
    to_team: Team
    service_area: LooseVocabulary


class RawContactResolved(RawRecord):
    record_type: Literal["contact_resolved"]
    channel: LooseVocabulary
    service_area: LooseVocabulary
    kind: LooseVocabulary
    customer_ref: LooseCustomerRef | None = None
    resolved_by_team: Team | None = None


class RawCallAbandoned(RawRecord):
    record_type: Literal["call_abandoned"]
    service_area: LooseVocabulary
    wait_seconds: WaitSeconds
    customer_ref: LooseCustomerRef | None = None


class RawMysteryShopAssessed(RawRecord):
    record_type: Literal["mystery_shop_assessed"]
    channel: LooseVocabulary
    service_area: LooseVocabulary
    scores: dict[Slug, Annotated[int, Field(ge=0, le=100)]] = Field(min_length=1, max_length=50)


RawContactRecord = Annotated[
    RawContactReceived
    | RawContactTransferred
    | RawContactResolved
    | RawCallAbandoned
    | RawMysteryShopAssessed,
    Field(discriminator="record_type"),
]
