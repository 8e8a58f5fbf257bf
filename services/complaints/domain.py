"""The complaint lifecycle: states, allowed transitions and the deadlines each sets.

Pure code: no Kafka, no database, no clock. `decide` takes a complaint's
current state and an action and returns either a `Decision` (the new state
and the events to publish) or a `Refusal` (a reason; nothing changes).
`breach` does the same for a deadline whose day has ended.

Corporate complaints follow the Complaint Handling Code (two stages).
Statutory social care complaints follow their own procedures (`PROCEDURES`)
and are flagged `statutory` on every event, so Code counts leave them out.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Literal
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict

from services.complaints.actions import (
    AcknowledgeComplaint,
    Action,
    CloseComplaint,
    ExtendDeadline,
    OpenComplaint,
    ReferToOmbudsman,
    RequestEscalation,
    RespondToComplaint,
    WithdrawComplaint,
)
from services.complaints.procedures import (
    PROCEDURES,
    Policy,
    ProcedureRules,
    procedure_for,
)
from services.complaints.working_days import (
    WorkingDayCalendar,
    add_months,
    end_of_local_day,
    local_date,
)
from shared.events.complaints import (
    ComplaintAcknowledged,
    ComplaintAcknowledgedPayload,
    ComplaintClosed,
    ComplaintClosedPayload,
    ComplaintDeadlineBreached,
    ComplaintDeadlineBreachedPayload,
    ComplaintDeadlineExtended,
    ComplaintDeadlineExtendedPayload,
    ComplaintEscalated,
    ComplaintEscalatedPayload,
    ComplaintEscalationRequested,
    ComplaintEscalationRequestedPayload,
    ComplaintEvent,
    ComplaintOpened,
    ComplaintOpenedPayload,
    ComplaintReferredToOmbudsman,
    ComplaintReferredToOmbudsmanPayload,
    ComplaintResponded,
    ComplaintRespondedPayload,
    ComplaintWithdrawn,
    ComplaintWithdrawnPayload,
)
from shared.events.contacts import ContactReceived
from shared.events.vocabulary import (
    Channel,
    ComplaintOutcome,
    ComplaintProcedure,
    ContactKind,
    DeadlineKind,
)

SOURCE = "civicpulse-complaints"
# Event ids are derived from what caused them, so a decision made twice (a
# retried transaction) produces the same events.
EVENT_ID_NAMESPACE = UUID("0c5b1e7a-5f0e-4f4b-9a57-9b1f3e8c2d41")


class Status(StrEnum):
    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"
    RESPONDED = "responded"
    ESCALATION_REQUESTED = "escalation_requested"
    REFERRED_TO_OMBUDSMAN = "referred_to_ombudsman"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"


# Once here, no deadline runs any more.
SETTLED = frozenset({Status.REFERRED_TO_OMBUDSMAN, Status.WITHDRAWN, Status.CLOSED})


class RefusalReason(StrEnum):
    UNKNOWN_COMPLAINT = "unknown_complaint"
    ALREADY_OPEN = "already_open"
    WRONG_STATE = "wrong_state"
    FINAL_STAGE = "final_stage"
    ESCALATION_WINDOW_CLOSED = "escalation_window_closed"
    SAME_RESPONDER = "same_responder"
    NO_PENDING_DEADLINE = "no_pending_deadline"
    NOT_EXTENDABLE = "not_extendable"
    ALREADY_EXTENDED = "already_extended"
    EXTENSION_TOO_LONG = "extension_too_long"
    DEADLINE_PASSED = "deadline_passed"
    NOT_A_WORKING_DAY = "not_a_working_day"
    REASON_REQUIRED = "reason_required"


# -- state ------------------------------------------------------------------------


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Deadline(Model):
    stage: int
    kind: DeadlineKind
    counted_from: date
    working_days: int = 0
    months: int = 0
    extension_days: int = 0
    extension_reason: str | None = None
    due_date: date
    met_on: date | None = None
    breached: bool = False
    cancelled: bool = False

    @property
    def pending(self) -> bool:
        """Still awaiting its action with the timer running."""
        return self.met_on is None and not self.breached and not self.cancelled

    @property
    def timer_id(self) -> str:
        return f"{self.stage}:{self.kind.value}"

    def due_on(self, calendar: WorkingDayCalendar) -> date:
        """The due date by the rule, under `calendar` (recalculated when it changes)."""
        if self.months:
            base = calendar.on_or_after(add_months(self.counted_from, self.months))
        else:
            base = calendar.add_working_days(self.counted_from, self.working_days)
        return calendar.add_working_days(base, self.extension_days)


DeadlineChange = Callable[[Deadline], Deadline]


class HistoryEntry(Model):
    occurred_at: datetime
    event_type: str
    stage: int
    detail: str | None = None


class Complaint(Model):
    complaint_id: str
    procedure: ComplaintProcedure
    service_area: str
    channel: Channel
    customer_ref: str | None = None
    contact_id: str | None = None
    received_at: datetime
    stage: int = 1
    status: Status = Status.RECEIVED
    responders: tuple[str, ...] = ()
    outcome: ComplaintOutcome | None = None
    escalation_window_ends: date | None = None
    deadlines: tuple[Deadline, ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    @property
    def statutory(self) -> bool:
        return self.procedure is not ComplaintProcedure.CORPORATE

    @property
    def rules(self) -> ProcedureRules:
        return PROCEDURES[self.procedure]

    def pending_deadlines(self) -> tuple[Deadline, ...]:
        return tuple(d for d in self.deadlines if d.pending)

    def deadline(self, stage: int, kind: DeadlineKind) -> Deadline | None:
        return next((d for d in self.deadlines if d.stage == stage and d.kind is kind), None)


@dataclass(frozen=True, slots=True)
class Decision:
    complaint: Complaint
    events: tuple[ComplaintEvent, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: RefusalReason
    message: str

    def describe(self) -> str:
        return f"{self.reason.value}: {self.message}"


class Refused(Exception):  # noqa: N818 - read as "the action was refused"
    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.refusal = Refusal(reason, message)


# -- deciding ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """What a decision needs besides the state and the action."""

    calendar: WorkingDayCalendar
    policy: Policy
    recorded_at: datetime


def decide(complaint: Complaint | None, action: Action, context: Context) -> Decision | Refusal:
    """Apply `action` to `complaint`, or say why it cannot be applied."""
    try:
        if isinstance(action, OpenComplaint):
            if complaint is not None:
                raise Refused(
                    RefusalReason.ALREADY_OPEN, f"complaint {action.complaint_id} already exists"
                )
            return _open(action, context)
        if complaint is None:
            raise Refused(
                RefusalReason.UNKNOWN_COMPLAINT,
                f"no complaint {action.complaint_id}; open it first",
            )
        return _Transition(complaint, action, context).apply()
    except Refused as refused:
        return refused.refusal


def open_action_for(contact: ContactReceived) -> OpenComplaint | None:
    """The complaint a contact of kind `complaint` opens; its id is derived from the contact."""
    if contact.payload.kind is not ContactKind.COMPLAINT:
        return None
    return OpenComplaint(
        action="open",
        action_id=f"contact:{contact.contact_id}",
        complaint_id=complaint_id_for_contact(contact.contact_id),
        source=contact.source,
        occurred_at=contact.occurred_at,
        service_area=contact.payload.service_area,
        channel=contact.payload.channel,
        customer_ref=contact.payload.customer_ref,
        contact_id=contact.contact_id,
    )


def complaint_id_for_contact(contact_id: str) -> str:
    """One contact opens one complaint, however often its event is delivered."""
    return f"CMP-{uuid5(EVENT_ID_NAMESPACE, f'contact:{contact_id}')}"


def action_key(action: Action) -> UUID:
    """The id an action is deduplicated on: its source's action_id, for that complaint.

    Scoped by complaint too, so that a system reusing an action_id on another
    complaint does not see that action dropped as a duplicate.
    """
    return uuid5(
        EVENT_ID_NAMESPACE, f"action:{action.source}:{action.complaint_id}:{action.action_id}"
    )


def correlation_for(complaint_id: str) -> UUID:
    return uuid5(EVENT_ID_NAMESPACE, f"complaint:{complaint_id}")


def _open(action: OpenComplaint, context: Context) -> Decision:
    procedure = procedure_for(action.service_area)
    complaint = Complaint(
        complaint_id=action.complaint_id,
        procedure=procedure,
        service_area=action.service_area,
        channel=action.channel,
        customer_ref=action.customer_ref,
        contact_id=action.contact_id,
        received_at=action.occurred_at,
    )
    transition = _Transition(complaint, action, context)
    transition.emit(
        ComplaintOpened,
        ComplaintOpenedPayload(
            service_area=action.service_area,
            procedure=procedure,
            statutory=complaint.statutory,
            channel=action.channel,
            customer_ref=action.customer_ref,
            contact_id=action.contact_id,
            matter_date=action.matter_date,
        ),
    )
    transition.start_deadlines(1, anchor="receipt")
    return transition.decision()


class _Transition:
    """One action applied to one complaint: the new state and its events."""

    def __init__(self, complaint: Complaint, action: Action, context: Context) -> None:
        self.complaint = complaint
        self.action = action
        self.context = context
        self.day = local_date(action.occurred_at)
        self.events: list[ComplaintEvent] = []

    def apply(self) -> Decision:
        action = self.action
        if isinstance(action, AcknowledgeComplaint):
            self._acknowledge()
        elif isinstance(action, RespondToComplaint):
            self._respond(action)
        elif isinstance(action, RequestEscalation):
            self._request_escalation()
        elif isinstance(action, ExtendDeadline):
            self._extend(action)
        elif isinstance(action, ReferToOmbudsman):
            self._refer(action)
        elif isinstance(action, WithdrawComplaint):
            self._withdraw(action)
        elif isinstance(action, CloseComplaint):
            self._close(action)
        else:  # OpenComplaint is handled by `decide`
            raise AssertionError(f"unexpected action {action!r}")
        return self.decision()

    # -- helpers ------------------------------------------------------------------

    def decision(self) -> Decision:
        return Decision(self.complaint, tuple(self.events))

    def update(self, **changes: object) -> None:
        self.complaint = self.complaint.model_copy(update=changes)

    def require(self, *statuses: Status) -> None:
        if self.complaint.status not in statuses:
            allowed = ", ".join(s.value for s in statuses)
            raise Refused(
                RefusalReason.WRONG_STATE,
                f"cannot {self.action.action}: the complaint is {self.complaint.status.value} "
                f"at stage {self.complaint.stage} (allowed only when {allowed})",
            )

    def emit(self, event_class: type[ComplaintEvent], payload: object) -> None:
        complaint = self.complaint
        causation = action_key(self.action)
        event = event_class.model_validate(
            {
                "event_id": uuid5(causation, str(len(self.events))),
                "occurred_at": self.action.occurred_at,
                "recorded_at": self.context.recorded_at,
                "source": SOURCE,
                "correlation_id": correlation_for(complaint.complaint_id),
                "causation_id": causation,
                "complaint_id": complaint.complaint_id,
                "payload": payload,
            }
        )
        self.events.append(event)
        entry = HistoryEntry(
            occurred_at=event.occurred_at,
            event_type=event.event_type,
            stage=complaint.stage,
            detail=_detail(self.action),
        )
        self.update(history=(*complaint.history, entry))

    def start_deadlines(
        self, stage: int, *, anchor: Literal["receipt", "request", "acknowledgement"]
    ) -> None:
        rules = self.complaint.rules.stage(stage)
        started = []
        for kind, rule in (
            (DeadlineKind.ACKNOWLEDGE, rules.acknowledge),
            (DeadlineKind.RESPOND, rules.respond),
        ):
            if rule is None or rule.counted_from != anchor:
                continue
            counted_from = (
                local_date(self.complaint.received_at) if anchor == "receipt" else self.day
            )
            deadline = Deadline(
                stage=stage,
                kind=kind,
                counted_from=counted_from,
                working_days=rule.working_days,
                months=rule.months,
                due_date=counted_from,  # replaced just below
            )
            started.append(
                deadline.model_copy(update={"due_date": deadline.due_on(self.context.calendar)})
            )
        self.update(deadlines=(*self.complaint.deadlines, *started))

    def settle_deadline(self, stage: int, kind: DeadlineKind) -> None:
        """The deadline's action happened (in time or late)."""
        self._replace_deadlines(
            lambda d: (
                d.model_copy(update={"met_on": self.day})
                if d.stage == stage and d.kind is kind and d.met_on is None and not d.cancelled
                else d
            )
        )

    def cancel_pending(self) -> None:
        self._replace_deadlines(
            lambda d: d.model_copy(update={"cancelled": True}) if d.pending else d
        )

    def _replace_deadlines(self, change: DeadlineChange) -> None:
        self.update(deadlines=tuple(change(d) for d in self.complaint.deadlines))

    def facts(self) -> dict[str, object]:
        return {"service_area": self.complaint.service_area, "procedure": self.complaint.procedure}

    # -- transitions --------------------------------------------------------------

    def _acknowledge(self) -> None:
        self.require(Status.RECEIVED, Status.ESCALATION_REQUESTED)
        if self.complaint.status is Status.ESCALATION_REQUESTED:
            to_stage = self.complaint.stage + 1
            self.update(stage=to_stage)
            self.emit(
                ComplaintEscalated, ComplaintEscalatedPayload(**self.facts(), to_stage=to_stage)
            )
        stage = self.complaint.stage
        self.settle_deadline(stage, DeadlineKind.ACKNOWLEDGE)
        self.update(status=Status.ACKNOWLEDGED)
        self.emit(ComplaintAcknowledged, ComplaintAcknowledgedPayload(**self.facts(), stage=stage))
        self.start_deadlines(stage, anchor="acknowledgement")

    def _respond(self, action: RespondToComplaint) -> None:
        self.require(Status.ACKNOWLEDGED)
        complaint = self.complaint
        if complaint.responders and complaint.responders[-1] == action.responder:
            raise Refused(
                RefusalReason.SAME_RESPONDER,
                f"stage {complaint.stage} must be answered by someone other than the stage "
                f"{complaint.stage - 1} responder ({action.responder})",
            )
        window_ends = None
        if complaint.stage < complaint.rules.final_stage:
            window_ends = self.context.calendar.add_working_days(
                self.day, self.context.policy.escalation_window_working_days
            )
        self.settle_deadline(complaint.stage, DeadlineKind.RESPOND)
        self.update(
            status=Status.RESPONDED,
            responders=(*complaint.responders, action.responder),
            outcome=action.outcome,
            escalation_window_ends=window_ends,
        )
        self.emit(
            ComplaintResponded,
            ComplaintRespondedPayload(
                **self.facts(),
                stage=complaint.stage,
                outcome=action.outcome,
                responder=action.responder,
                learning_actions=action.learning_actions,
            ),
        )

    def _request_escalation(self) -> None:
        self.require(Status.RESPONDED)
        complaint = self.complaint
        if complaint.stage >= complaint.rules.final_stage:
            raise Refused(
                RefusalReason.FINAL_STAGE,
                f"stage {complaint.stage} is the last stage of the {complaint.procedure.value} "
                "procedure; the customer may go to the Ombudsman",
            )
        if complaint.escalation_window_ends and self.day > complaint.escalation_window_ends:
            raise Refused(
                RefusalReason.ESCALATION_WINDOW_CLOSED,
                f"the window to ask for stage {complaint.stage + 1} closed on "
                f"{complaint.escalation_window_ends.isoformat()}",
            )
        self.update(status=Status.ESCALATION_REQUESTED)
        self.emit(
            ComplaintEscalationRequested,
            ComplaintEscalationRequestedPayload(**self.facts(), from_stage=complaint.stage),
        )
        self.start_deadlines(complaint.stage + 1, anchor="request")

    def _extend(self, action: ExtendDeadline) -> None:
        complaint = self.complaint
        stage = complaint.stage + (complaint.status is Status.ESCALATION_REQUESTED)
        deadline = complaint.deadline(stage, action.deadline)
        if deadline is None or deadline.met_on is not None or deadline.cancelled:
            raise Refused(
                RefusalReason.NO_PENDING_DEADLINE,
                f"no open {action.deadline.value} deadline at stage {stage}",
            )
        rules = complaint.rules.stage(stage)
        rule = rules.respond if action.deadline is DeadlineKind.RESPOND else rules.acknowledge
        if (
            rule is None
            or action.deadline is DeadlineKind.ACKNOWLEDGE
            or rule.max_extension_days == 0
        ):
            raise Refused(
                RefusalReason.NOT_EXTENDABLE,
                f"the stage {stage} {action.deadline.value} deadline cannot be extended",
            )
        if deadline.extension_days:
            raise Refused(
                RefusalReason.ALREADY_EXTENDED,
                f"the stage {stage} response deadline was already extended once, to "
                f"{deadline.due_date.isoformat()}",
            )
        if deadline.breached or self.day > deadline.due_date:
            raise Refused(
                RefusalReason.DEADLINE_PASSED,
                f"the deadline passed on {deadline.due_date.isoformat()}; an extension is "
                "agreed before it",
            )
        calendar = self.context.calendar
        if action.new_due_date is not None:
            if not calendar.is_working_day(action.new_due_date):
                raise Refused(
                    RefusalReason.NOT_A_WORKING_DAY,
                    f"{action.new_due_date.isoformat()} is not a working day",
                )
            days = calendar.working_days_between(deadline.due_date, action.new_due_date)
        else:
            days = action.days or 0
        if days < 1 or (rule.max_extension_days is not None and days > rule.max_extension_days):
            raise Refused(
                RefusalReason.EXTENSION_TOO_LONG,
                f"an extension adds 1 to {rule.max_extension_days} working days after "
                f"{deadline.due_date.isoformat()}; this one adds {days}",
            )
        extended = deadline.model_copy(
            update={"extension_days": days, "extension_reason": action.reason}
        )
        extended = extended.model_copy(update={"due_date": extended.due_on(calendar)})
        self._replace_deadlines(lambda d: extended if d is deadline else d)
        self.emit(
            ComplaintDeadlineExtended,
            ComplaintDeadlineExtendedPayload(
                **self.facts(),
                stage=stage,
                deadline=action.deadline,
                new_due_date=extended.due_date,
                reason=action.reason,
            ),
        )

    def _refer(self, action: ReferToOmbudsman) -> None:
        self.require(Status.RESPONDED)
        self.cancel_pending()
        self.update(status=Status.REFERRED_TO_OMBUDSMAN)
        self.emit(
            ComplaintReferredToOmbudsman,
            ComplaintReferredToOmbudsmanPayload(
                **self.facts(),
                ombudsman=action.ombudsman,
                ombudsman_reference=action.ombudsman_reference,
            ),
        )

    def _withdraw(self, action: WithdrawComplaint) -> None:
        self.require(
            Status.RECEIVED, Status.ACKNOWLEDGED, Status.RESPONDED, Status.ESCALATION_REQUESTED
        )
        self.cancel_pending()
        self.update(status=Status.WITHDRAWN)
        self.emit(
            ComplaintWithdrawn,
            ComplaintWithdrawnPayload(
                **self.facts(), stage=self.complaint.stage, reason=action.reason
            ),
        )

    def _close(self, action: CloseComplaint) -> None:
        if self.complaint.status is Status.CLOSED:
            raise Refused(RefusalReason.WRONG_STATE, "the complaint is already closed")
        unanswered = {Status.RECEIVED, Status.ACKNOWLEDGED, Status.ESCALATION_REQUESTED}
        if self.complaint.status in unanswered and action.reason is None:
            raise Refused(
                RefusalReason.REASON_REQUIRED,
                f"closing a complaint that is {self.complaint.status.value} refuses it: "
                "give the reason",
            )
        self.cancel_pending()
        self.update(status=Status.CLOSED)
        self.emit(
            ComplaintClosed,
            ComplaintClosedPayload(
                **self.facts(), final_stage=self.complaint.stage, reason=action.reason
            ),
        )


def _detail(action: Action) -> str | None:
    for name in ("reason", "outcome"):
        value = getattr(action, name, None)
        if value is not None:
            return str(value)
    return None


# -- deadlines passing and the calendar changing ----------------------------------


def breach(
    complaint: Complaint, stage: int, kind: DeadlineKind, *, now: datetime, recorded_at: datetime
) -> Decision | None:
    """The deadline's day ended without its action: record it once, or None if not due."""
    deadline = complaint.deadline(stage, kind)
    if deadline is None or not deadline.pending or end_of_local_day(deadline.due_date) > now:
        return None
    breached_at = end_of_local_day(deadline.due_date)
    causation = uuid5(EVENT_ID_NAMESPACE, f"breach:{complaint.complaint_id}:{deadline.timer_id}")
    event = ComplaintDeadlineBreached(
        event_id=uuid5(causation, deadline.due_date.isoformat()),
        occurred_at=breached_at,
        recorded_at=recorded_at,
        source=SOURCE,
        correlation_id=correlation_for(complaint.complaint_id),
        complaint_id=complaint.complaint_id,
        payload=ComplaintDeadlineBreachedPayload(
            service_area=complaint.service_area,
            procedure=complaint.procedure,
            stage=stage,
            deadline=kind,
            due_date=deadline.due_date,
        ),
    )
    entry = HistoryEntry(
        occurred_at=breached_at,
        event_type=event.event_type,
        stage=stage,
        detail=f"{kind.value} due {deadline.due_date.isoformat()}",
    )
    updated = complaint.model_copy(
        update={
            "deadlines": tuple(
                d.model_copy(update={"breached": True}) if d is deadline else d
                for d in complaint.deadlines
            ),
            "history": (*complaint.history, entry),
        }
    )
    return Decision(updated, (event,))


def recalculate(complaint: Complaint, calendar: WorkingDayCalendar) -> Complaint:
    """Pending deadlines recounted under a changed calendar (a closure day added)."""
    return complaint.model_copy(
        update={
            "deadlines": tuple(
                d.model_copy(update={"due_date": d.due_on(calendar)}) if d.pending else d
                for d in complaint.deadlines
            )
        }
    )


def invariant_violations(complaint: Complaint, calendar: WorkingDayCalendar) -> Iterator[str]:
    """What would make a state illegal; the property tests assert there is none."""
    final = complaint.rules.final_stage
    if not 1 <= complaint.stage <= final:
        yield f"stage {complaint.stage} outside 1..{final}"
    if complaint.status is Status.RECEIVED and complaint.stage != 1:
        yield "received beyond stage 1"
    if complaint.status is Status.ESCALATION_REQUESTED and complaint.stage >= final:
        yield "escalation requested beyond the final stage"
    if len(complaint.responders) > complaint.stage:
        yield "more responses than stages"
    for earlier, later in zip(complaint.responders, complaint.responders[1:], strict=False):
        if earlier == later:
            yield "one person responded at two stages in a row"
    for deadline in complaint.deadlines:
        if not calendar.is_working_day(deadline.due_date):
            yield f"deadline {deadline.timer_id} due on a non-working day"
        if deadline.pending and complaint.status in SETTLED:
            yield f"deadline {deadline.timer_id} still running on a {complaint.status} case"
        if deadline.stage > complaint.stage + 1:
            yield f"deadline {deadline.timer_id} beyond the next stage"
    keys = [d.timer_id for d in complaint.deadlines]
    if len(keys) != len(set(keys)):
        yield "two deadlines of one kind at one stage"
