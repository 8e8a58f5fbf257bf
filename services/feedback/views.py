"""Feedback's HTTP response models (and the one request model of the JSON answer API)."""

from datetime import datetime

from pydantic import BaseModel, Field

from services.feedback.comments_store import SurveyComment
from services.feedback.domain import MAX_COMMENT_LENGTH, QUESTIONS
from services.feedback.store import SurveyRequest
from shared.erasure import ErasureReceipt
from shared.events.vocabulary import CaseType, Resolved


class Choice(BaseModel):
    value: str
    label: str


class SurveyQuestion(BaseModel):
    id: str
    text: str
    hint: str
    required: bool
    choices: list[Choice] = Field(description="Allowed answers; empty for free text.")
    max_length: int | None = None


class SurveyForm(BaseModel):
    request_id: str
    service_area: str
    expires_at: datetime | None
    questions: list[SurveyQuestion]


class SurveyAnswers(BaseModel):
    overall: int = Field(ge=1, le=5, description="Overall satisfaction, 1 to 5.")
    ease: int = Field(ge=1, le=7, description="Ease, 1 very difficult to 7 very easy.")
    resolved: Resolved
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_LENGTH)


class AnswerAccepted(BaseModel):
    request_id: str
    status: str = "answered"


class DeliveryStatusRecorded(BaseModel):
    """The answer to a Notify delivery-status callback."""

    reference: str
    status: str
    outcome: str = Field(
        description="`recorded` (now the request's latest status) or `kept_latest` "
        "(a repeat, or older than the status held)."
    )


class LinkProblem(BaseModel):
    code: str = Field(description="`invalid_link`, `not_found`, `already_answered`, `expired`.")
    message: str


class LinkRefused(BaseModel):
    """Under `detail`, like every other error of the service."""

    detail: LinkProblem


# The erasure receipt: what was deleted per table, and what stays on which topic until when.
Erased = ErasureReceipt


class Comment(BaseModel):
    """A survey comment, redacted, with where its case was; never who wrote it."""

    comment_ref: str = Field(description="SatisfactionResponded's `comment_ref` (request id).")
    answered_at: datetime
    service_area: str
    channel: str
    overall: int
    comment: str


class Comments(BaseModel):
    comments: list[Comment] = Field(description="Newest first.")


def comment(kept: SurveyComment) -> Comment:
    return Comment(
        comment_ref=kept.request_id,
        answered_at=kept.answered_at,
        service_area=kept.service_area,
        channel=kept.channel,
        overall=kept.overall,
        comment=kept.comment,
    )


class OptedOut(BaseModel):
    customer_ref: str
    newly_opted_out: bool


class CaseRequest(BaseModel):
    request_id: str
    status: str
    send_at: datetime
    requested_at: datetime | None
    expires_at: datetime | None
    answered_at: datetime | None
    cancel_reason: str | None


class Suppression(BaseModel):
    reason: str
    decided_at: datetime


class CaseDecisions(BaseModel):
    case_type: CaseType
    case_id: str
    request: CaseRequest | None
    suppressions: list[Suppression]


def question_set() -> list[SurveyQuestion]:
    return [SurveyQuestion.model_validate(q, from_attributes=True) for q in QUESTIONS]


def survey_form(request: SurveyRequest) -> SurveyForm:
    return SurveyForm(
        request_id=request.request_id,
        service_area=request.service_area,
        expires_at=request.expires_at,
        questions=question_set(),
    )


def case_decisions(
    case_type: CaseType,
    case_id: str,
    request: SurveyRequest | None,
    suppressions: list[tuple[str, datetime]],
) -> CaseDecisions:
    return CaseDecisions(
        case_type=case_type,
        case_id=case_id,
        request=CaseRequest.model_validate(request, from_attributes=True) if request else None,
        suppressions=[Suppression(reason=r, decided_at=at) for r, at in suppressions],
    )
