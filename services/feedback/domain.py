"""Who gets a satisfaction request, when, and what an answer must hold: pure rules, no I/O.

DOMAIN.md, "Satisfaction": every resolved enquiry, service request and
complaint gets one request after a delay, unless the customer opted out, gave
no contact route, or was surveyed within the quiet period; never two for one
case. A complaint is surveyed once, after the final response of its last
stage. The rules are checked in a fixed order and the first that applies is
the recorded reason, so the suppression counts add up.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.events.vocabulary import (
    CaseType,
    Channel,
    ComplaintProcedure,
    ContactKind,
    Resolved,
)
from shared.redaction import redact

# Namespace of request ids: one case always maps to the same request id, so a
# replayed resolution can never mint a second request.
REQUEST_NAMESPACE = uuid.UUID("5f0c1c52-7a43-4d43-9a53-2f1b7c3f8c11")
SURVEYED_CONTACT_KINDS = frozenset({ContactKind.ENQUIRY, ContactKind.SERVICE_REQUEST})
# The stage whose response is final, per procedure (Code: 2 stages; adult
# social care: 1 local stage; children's social care: 3 stages).
FINAL_STAGE = {
    ComplaintProcedure.CORPORATE: 2,
    ComplaintProcedure.ADULT_SOCIAL_CARE: 1,
    ComplaintProcedure.CHILDRENS_SOCIAL_CARE: 3,
}
MAX_COMMENT_LENGTH = 1000


class SuppressionReason(StrEnum):
    NOT_SURVEYED_KIND = "not_surveyed_kind"
    COMPLAINT_PROCEDURE = "complaint_procedure"
    STATUTORY_PROCEDURE = "statutory_procedure"
    WITHDRAWN = "withdrawn"
    ALREADY_REQUESTED = "already_requested"
    STALE = "stale"
    OPTED_OUT = "opted_out"
    NO_CONTACT_ROUTE = "no_contact_route"
    QUIET_PERIOD = "quiet_period"
    UNKNOWN_CASE = "unknown_case"


@dataclass(frozen=True, slots=True)
class Policy:
    delay: timedelta
    expiry: timedelta
    quiet_period: timedelta


@dataclass(frozen=True, slots=True)
class Resolution:
    """A case that has just been resolved, as the feedback service sees it."""

    case_type: CaseType
    case_id: str
    service_area: str
    channel: Channel
    customer_ref: str | None
    resolved_at: datetime
    contact_kind: ContactKind | None = None
    procedure: ComplaintProcedure | None = None
    withdrawn: bool = False
    # The contact a complaint arrived on: one survey covers both.
    linked_case_ids: tuple[tuple[CaseType, str], ...] = ()

    @property
    def case_keys(self) -> tuple[tuple[CaseType, str], ...]:
        return ((self.case_type, self.case_id), *self.linked_case_ids)


@dataclass(frozen=True, slots=True)
class CustomerHistory:
    """What the service knows about the customer and the case when deciding."""

    opted_out: bool
    has_contact_route: bool
    case_already_requested: bool
    # Resolution times of the customer's earlier requests (not cancelled ones).
    surveyed_resolutions: tuple[datetime, ...] = ()


@dataclass(frozen=True, slots=True)
class Schedule:
    request_id: str
    send_at: datetime


@dataclass(frozen=True, slots=True)
class Suppress:
    reason: SuppressionReason


Decision = Schedule | Suppress


def request_id_for(case_type: CaseType, case_id: str) -> str:
    return str(uuid.uuid5(REQUEST_NAMESPACE, f"{case_type.value}:{case_id}"))


def is_final_response(procedure: ComplaintProcedure, stage: int) -> bool:
    """A response ends the procedure only at its last stage; earlier ones may be escalated."""
    return stage >= FINAL_STAGE[procedure]


def decide(
    resolution: Resolution, history: CustomerHistory, policy: Policy, now: datetime
) -> Decision:
    """Schedule one request for the resolved case, or say why not (the first rule that applies)."""
    reason = suppression_reason(resolution, history, policy, now)
    if reason is not None:
        return Suppress(reason)
    return Schedule(
        request_id=request_id_for(resolution.case_type, resolution.case_id),
        send_at=resolution.resolved_at + policy.delay,
    )


def suppression_reason(
    resolution: Resolution, history: CustomerHistory, policy: Policy, now: datetime
) -> SuppressionReason | None:
    if resolution.contact_kind is ContactKind.COMPLAINT:
        # The complaint it became is surveyed after its last stage, on its handling.
        return SuppressionReason.COMPLAINT_PROCEDURE
    if resolution.contact_kind is not None and (
        resolution.contact_kind not in SURVEYED_CONTACT_KINDS
    ):
        return SuppressionReason.NOT_SURVEYED_KIND
    if resolution.procedure not in (None, ComplaintProcedure.CORPORATE):
        return SuppressionReason.STATUTORY_PROCEDURE
    if resolution.withdrawn:
        return SuppressionReason.WITHDRAWN
    if history.case_already_requested:
        return SuppressionReason.ALREADY_REQUESTED
    if resolution.resolved_at + policy.delay + policy.expiry < now:
        # A replay of old history must not survey people about long-closed cases.
        return SuppressionReason.STALE
    if history.opted_out:
        return SuppressionReason.OPTED_OUT
    if resolution.customer_ref is None or not history.has_contact_route:
        return SuppressionReason.NO_CONTACT_ROUTE
    if within_quiet_period(resolution.resolved_at, history.surveyed_resolutions, policy):
        return SuppressionReason.QUIET_PERIOD
    return None


def within_quiet_period(
    resolved_at: datetime, surveyed: Iterable[datetime], policy: Policy
) -> bool:
    # Either side: resolutions may arrive out of order from different topics.
    return any(abs(resolved_at - earlier) < policy.quiet_period for earlier in surveyed)


# The question set: the same everywhere so that services compare (DOMAIN.md, seed 004).
@dataclass(frozen=True, slots=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    text: str
    hint: str
    required: bool
    choices: tuple[Choice, ...] = ()
    max_length: int | None = None


QUESTIONS: tuple[Question, ...] = (
    Question(
        id="overall",
        text="Overall, how satisfied are you with the service you received?",
        hint="1 is very dissatisfied, 5 is very satisfied.",
        required=True,
        choices=(
            Choice("1", "1 - Very dissatisfied"),
            Choice("2", "2 - Dissatisfied"),
            Choice("3", "3 - Neither satisfied nor dissatisfied"),
            Choice("4", "4 - Satisfied"),
            Choice("5", "5 - Very satisfied"),
        ),
    ),
    Question(
        id="ease",
        text="How easy was it to get what you needed?",
        hint="1 is very difficult, 7 is very easy.",
        required=True,
        choices=(
            Choice("1", "1 - Very difficult"),
            *(Choice(str(n), str(n)) for n in range(2, 7)),
            Choice("7", "7 - Very easy"),
        ),
    ),
    Question(
        id="resolved",
        text="Was your enquiry or problem resolved?",
        hint="",
        required=True,
        choices=(
            Choice(Resolved.YES.value, "Yes"),
            Choice(Resolved.PARTLY.value, "Partly"),
            Choice(Resolved.NO.value, "No"),
        ),
    ),
    Question(
        id="comment",
        text="Is there anything you would like to tell us? (optional)",
        hint=f"Do not include personal details such as your name, address, email or phone "
        f"number. Up to {MAX_COMMENT_LENGTH} characters.",
        required=False,
        max_length=MAX_COMMENT_LENGTH,
    ),
)


@dataclass(frozen=True, slots=True)
class Answers:
    overall: int
    ease: int
    resolved: Resolved
    comment: str | None


@dataclass(frozen=True, slots=True)
class AnswerError:
    field: str
    message: str


class InvalidAnswersError(ValueError):
    def __init__(self, errors: list[AnswerError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


_ERRORS = {
    "overall": "Select how satisfied you are overall, from 1 to 5",
    "ease": "Select how easy it was, from 1 to 7",
    "resolved": "Select whether your enquiry or problem was resolved",
}


def read_answers(form: dict[str, str | None]) -> Answers:
    """Check answers from the form or the JSON API; every error is reported, by field."""
    errors: list[AnswerError] = []
    values: dict[str, str] = {}
    for question in QUESTIONS:
        raw = form.get(question.id)
        value = "" if raw is None else str(raw).strip()
        if question.choices and value not in {choice.value for choice in question.choices}:
            errors.append(AnswerError(question.id, _ERRORS[question.id]))
        elif question.max_length is not None and len(value) > question.max_length:
            errors.append(
                AnswerError(
                    question.id, f"Your comment must be {question.max_length} characters or fewer"
                )
            )
        values[question.id] = value
    if errors:
        raise InvalidAnswersError(errors)
    return Answers(
        overall=int(values["overall"]),
        ease=int(values["ease"]),
        resolved=Resolved(values["resolved"]),
        comment=redact(values["comment"]) or None,
    )


__all__ = ["redact"]  # the cleaning of comments: shared.redaction, kept importable here
