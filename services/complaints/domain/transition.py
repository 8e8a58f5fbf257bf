"""`Transition`: one action being applied to one complaint, and the helpers transitions share.

It holds the complaint as it changes and the events emitted so far; `meet`
judges a deadline's action by its local date, whatever arrived first.
"""

from uuid import uuid5

from services.complaints.actions import (
    Action,
)
from services.complaints.domain.deadlines import breach_event, start_deadlines
from services.complaints.domain.model import (
    SOURCE,
    Complaint,
    Context,
    Deadline,
    Decision,
    HistoryEntry,
    RefusalReason,
    Refused,
    Status,
    action_key,
    correlation_for,
)
from services.complaints.procedures import Anchor
from services.complaints.working_days import end_of_local_day, local_date
from shared.events.complaints import (
    ComplaintDeadlineBreachCorrected,
    ComplaintDeadlineBreachCorrectedPayload,
    ComplaintEvent,
)
from shared.events.vocabulary import DeadlineKind


def same_person(first: str, second: str) -> bool:
    """Staff references compared as people read them: "Alice  Smith" is "alice smith"."""
    return " ".join(first.split()).casefold() == " ".join(second.split()).casefold()


class Transition:
    """One action applied to one complaint: the new state and its events."""

    def __init__(self, complaint: Complaint, action: Action, context: Context) -> None:
        self.complaint = complaint
        self.action = action
        self.context = context
        self.day = local_date(action.occurred_at)
        self.events: list[ComplaintEvent] = []

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

    def facts(self) -> dict[str, object]:
        return {"service_area": self.complaint.service_area, "procedure": self.complaint.procedure}

    def emit(self, event_class: type[ComplaintEvent], payload: object) -> None:
        causation = action_key(self.action)
        self.append(
            event_class.model_validate(
                {
                    "event_id": uuid5(causation, str(len(self.events))),
                    "occurred_at": self.action.occurred_at,
                    "recorded_at": self.context.recorded_at,
                    "source": SOURCE,
                    "correlation_id": correlation_for(self.complaint.complaint_id),
                    "causation_id": causation,
                    "complaint_id": self.complaint.complaint_id,
                    "payload": payload,
                }
            ),
            _detail(self.action),
        )

    def append(self, event: ComplaintEvent, detail: str | None) -> None:
        entry = HistoryEntry(
            occurred_at=event.occurred_at,
            event_type=event.event_type,
            stage=self.complaint.stage,
            detail=detail,
        )
        self.events.append(event)
        self.update(history=(*self.complaint.history, entry))

    def start(self, stage: int, anchor: Anchor) -> None:
        started = start_deadlines(self.complaint, stage, anchor, self.day, self.context.calendar)
        self.update(deadlines=(*self.complaint.deadlines, *started))

    def replace_deadline(self, old: Deadline, new: Deadline) -> None:
        self.update(deadlines=tuple(new if d is old else d for d in self.complaint.deadlines))

    def meet(self, stage: int, kind: DeadlineKind) -> None:
        """The deadline's action happened: judged on its local date, whatever arrived first.

        Late, before the timer fired: the missing breach is recorded now. On time, after the
        timer fired: the breach is corrected. Either way counts agree with the dates.
        """
        deadline = self.complaint.deadline(stage, kind)
        if deadline is None or deadline.met_on is not None or deadline.cancelled:
            return
        if deadline.pending and self.day > deadline.due_date:
            event = breach_event(self.complaint, deadline, self.context.recorded_at)
            self.append(event, f"{kind.value} due {deadline.due_date.isoformat()}")
            deadline = self._swap(deadline, breached=True)
        if deadline.breached and self.day <= deadline.due_date and not deadline.breach_corrected:
            self._correct_breach(deadline)
            deadline = self._swap(deadline, breach_corrected=True)
        self._swap(deadline, met_on=self.day)

    def _swap(self, deadline: Deadline, **changes: object) -> Deadline:
        changed = deadline.model_copy(update=changes)
        self.replace_deadline(deadline, changed)
        return changed

    def _correct_breach(self, deadline: Deadline) -> None:
        complaint = self.complaint
        causation = action_key(self.action)
        event = ComplaintDeadlineBreachCorrected(
            event_id=uuid5(causation, f"correction:{deadline.timer_id}"),
            # Dated at the breach it undoes, so day counts cancel where they were made.
            occurred_at=end_of_local_day(deadline.due_date),
            recorded_at=self.context.recorded_at,
            source=SOURCE,
            correlation_id=correlation_for(complaint.complaint_id),
            causation_id=causation,
            complaint_id=complaint.complaint_id,
            payload=ComplaintDeadlineBreachCorrectedPayload(
                service_area=complaint.service_area,
                procedure=complaint.procedure,
                stage=deadline.stage,
                deadline=deadline.kind,
                due_date=deadline.due_date,
                met_on=self.day,
            ),
        )
        self.append(event, f"{deadline.kind.value} met on {self.day.isoformat()}")

    def cancel_pending(self) -> None:
        """The case ends (withdrawn, refused, referred): its running deadlines stop.

        One already past on the action's date breached before it, whether or not its
        timer fired first: the missing breach is recorded now, as `meet` does.
        """
        for deadline in self.complaint.deadlines:
            if deadline.pending and self.day > deadline.due_date:
                event = breach_event(self.complaint, deadline, self.context.recorded_at)
                self.append(event, f"{deadline.kind.value} due {deadline.due_date.isoformat()}")
                self._swap(deadline, breached=True)
        self.update(
            deadlines=tuple(
                d.model_copy(update={"cancelled": True}) if d.pending else d
                for d in self.complaint.deadlines
            )
        )

    def use_window(self) -> None:
        """The right to ask for the next stage is spent (asked, refused or referred)."""
        window = self.complaint.escalation_window
        if window is not None:
            self.update(escalation_window=window.model_copy(update={"used": True}))


def _detail(action: Action) -> str | None:
    """What the case history keeps of the action: officers' free text (reasons, a refusal's
    detail) is kept here, with the case, rather than on the events (erased with the customer)."""
    if (detail := getattr(action, "detail", None)) is not None:
        return f"{getattr(action, 'reason', '')}: {detail}"
    for name in ("reason", "outcome", "decision", "learning_action_id"):
        value = getattr(action, name, None)
        if value is not None:
            return str(value)
    return None
