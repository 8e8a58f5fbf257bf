"""Intake's HTTP response models, and the bodies of its error answers."""

from typing import Any

from fastapi import status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.intake.handlers import HttpRejection, HttpResult, RecordStatus


class RecordResult(BaseModel):
    index: int = Field(description="Position of the record in the request.")
    idempotency_key: str
    event_id: str = Field(description="The canonical event's id (the same for a duplicate).")
    status: RecordStatus


class ContactsAccepted(BaseModel):
    accepted: int = Field(description="Records published as new canonical events.")
    duplicates: int = Field(description="Records already accepted earlier; nothing was changed.")
    results: list[RecordResult]


class RecordError(BaseModel):
    record: int | None = Field(description="Position of the failing record; null for the body.")
    field: str = Field(description="Dotted path of the failing field within the record.")
    reason: str = Field(description="Reason code, e.g. `invalid_record`, `unknown_vocabulary`.")
    message: str


class ContactsRejected(BaseModel):
    detail: list[RecordError]


def contacts_accepted(outcome: list[HttpResult]) -> ContactsAccepted:
    results = [RecordResult.model_validate(item, from_attributes=True) for item in outcome]
    return ContactsAccepted(
        accepted=sum(r.status is RecordStatus.ACCEPTED for r in results),
        duplicates=sum(r.status is RecordStatus.DUPLICATE for r in results),
        results=results,
    )


def contacts_rejected(rejections: list[HttpRejection]) -> JSONResponse:
    """409 when every refusal is a reused idempotency key, else 422; each failing field listed."""
    errors = [
        RecordError(
            record=r.index, field=e.field, reason=r.rejected.reason.value, message=e.message
        )
        for r in rejections
        for e in r.rejected.errors
    ]
    conflict = all(r.rejected.reason == "idempotency_conflict" for r in rejections)
    return _rejected(
        errors,
        status.HTTP_409_CONFLICT if conflict else status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def body_error(message: str) -> JSONResponse:
    error = RecordError(record=None, field="body", reason="invalid_json", message=message)
    return _rejected([error], status.HTTP_422_UNPROCESSABLE_CONTENT)


def _rejected(errors: list[RecordError], status_code: int) -> JSONResponse:
    body: dict[str, Any] = ContactsRejected(detail=errors).model_dump()
    return JSONResponse(body, status_code=status_code)
