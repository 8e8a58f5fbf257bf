"""Deadlines and escalation windows: started, breached, lapsed and recounted.

A deadline is a local date (Europe/London); its timer fires when that day
ends. `breach` records a deadline that passed without its action; `lapse`
closes a complaint whose escalation window ended with no request;
`recalculate` recounts both under a changed calendar.
"""

from collections.abc import Iterator
from datetime import date, datetime
from uuid import uuid5

from services.complaints.domain.model import (
    EVENT_ID_NAMESPACE,
    SETTLED,
    SOURCE,
    Complaint,
    Deadline,
    Decision,
    HistoryEntry,
    Status,
    correlation_for,
)
from services.complaints.procedures import Anchor
from services.complaints.working_days import WorkingDayCalendar, end_of_local_day, local_date
from shared.events.complaints import (
    CloseReason,
    ComplaintClosed,
    ComplaintClosedPayload,
    ComplaintDeadlineBreached,
    ComplaintDeadlineBreachedPayload,
)
from shared.events.vocabulary import DeadlineKind

WINDOW_TIMER_KIND = "escalation_window"


def start_deadlines(
    complaint: Complaint, stage: int, anchor: Anchor, day: date, calendar: WorkingDayCalendar
) -> list[Deadline]:
    """The stage's deadlines counted from `anchor`, which happened on `day`."""
    counted_from = local_date(complaint.received_at) if anchor == "receipt" else day
    started = []
    for kind, rule in complaint.rules.stage(stage).deadlines():
        if rule.counted_from != anchor:
            continue
        deadline = Deadline(
            stage=stage,
            kind=kind,
            counted_from=counted_from,
            working_days=rule.working_days,
            months=rule.months,
            statutory_days=complaint.rules.statutory_days,
            day_before_anniversary=rule.day_before_anniversary,
            due_date=counted_from,  # replaced just below
        )
        started.append(deadline.model_copy(update={"due_date": deadline.due_on(calendar)}))
    return started


def breach_event(
    complaint: Complaint, deadline: Deadline, recorded_at: datetime
) -> ComplaintDeadlineBreached:
    """The one breach of `deadline`: the same id whether its timer or a late action found it."""
    causation = uuid5(EVENT_ID_NAMESPACE, f"breach:{complaint.complaint_id}:{deadline.timer_id}")
    return ComplaintDeadlineBreached(
        event_id=uuid5(causation, deadline.due_date.isoformat()),
        occurred_at=end_of_local_day(deadline.due_date),
        recorded_at=recorded_at,
        source=SOURCE,
        correlation_id=correlation_for(complaint.complaint_id),
        complaint_id=complaint.complaint_id,
        payload=ComplaintDeadlineBreachedPayload(
            service_area=complaint.service_area,
            procedure=complaint.procedure,
            stage=deadline.stage,
            deadline=deadline.kind,
            due_date=deadline.due_date,
        ),
    )


def breach(
    complaint: Complaint, stage: int, kind: DeadlineKind, *, now: datetime, recorded_at: datetime
) -> Decision | None:
    """The deadline's day ended without its action: record it once, or None if not due."""
    deadline = complaint.deadline(stage, kind)
    if deadline is None or not deadline.pending or end_of_local_day(deadline.due_date) > now:
        return None
    event = breach_event(complaint, deadline, recorded_at)
    entry = HistoryEntry(
        occurred_at=event.occurred_at,
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


def lapse(complaint: Complaint, *, now: datetime, recorded_at: datetime) -> Decision | None:
    """The escalation window ended with no request: close the complaint, once.

    A complaint an officer closed inside the window only loses the right to ask;
    it was closed (and surveyed) already.
    """
    window = complaint.escalation_window
    if window is None or not window.open or end_of_local_day(window.ends) > now:
        return None
    lapsed = complaint.model_copy(
        update={"escalation_window": window.model_copy(update={"lapsed": True})}
    )
    if complaint.status is not Status.RESPONDED:
        return Decision(lapsed, ())
    causation = uuid5(EVENT_ID_NAMESPACE, f"lapse:{complaint.complaint_id}:{window.timer_id}")
    event = ComplaintClosed(
        event_id=uuid5(causation, window.ends.isoformat()),
        occurred_at=end_of_local_day(window.ends),
        recorded_at=recorded_at,
        source=SOURCE,
        correlation_id=correlation_for(complaint.complaint_id),
        causation_id=causation,
        complaint_id=complaint.complaint_id,
        payload=ComplaintClosedPayload(
            service_area=complaint.service_area,
            procedure=complaint.procedure,
            final_stage=complaint.stage,
            closed_because=CloseReason.ESCALATION_WINDOW_LAPSED,
        ),
    )
    entry = HistoryEntry(
        occurred_at=event.occurred_at,
        event_type=event.event_type,
        stage=complaint.stage,
        detail=f"escalation window ended {window.ends.isoformat()}",
    )
    closed = lapsed.model_copy(
        update={"status": Status.CLOSED, "history": (*complaint.history, entry)}
    )
    return Decision(closed, (event,))


def recalculate(complaint: Complaint, calendar: WorkingDayCalendar) -> Complaint:
    """Running deadlines and an open window recounted under a changed calendar."""
    window = complaint.escalation_window
    if window is not None and window.open:
        window = window.model_copy(update={"ends": window.ends_on(calendar)})
    return complaint.model_copy(
        update={
            "deadlines": tuple(
                d.model_copy(update={"due_date": d.due_on(calendar)}) if d.pending else d
                for d in complaint.deadlines
            ),
            "escalation_window": window,
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
        if " ".join(earlier.split()).casefold() == " ".join(later.split()).casefold():
            yield "one person responded at two stages in a row"
    for deadline in complaint.deadlines:
        days = calendar.statutory() if deadline.statutory_days else calendar
        if not days.is_working_day(deadline.due_date):
            yield f"deadline {deadline.timer_id} due on a non-working day"
        if deadline.pending and complaint.status in SETTLED:
            yield f"deadline {deadline.timer_id} still running on a {complaint.status} case"
        if deadline.stage > complaint.stage + 1:
            yield f"deadline {deadline.timer_id} beyond the next stage"
        if deadline.met_on is not None and deadline.met_in_time is False and not deadline.breached:
            yield f"deadline {deadline.timer_id} met late without a breach"
        if deadline.breach_corrected and not deadline.met_in_time:
            yield f"deadline {deadline.timer_id} breach corrected by a late action"
    keys = [d.timer_id for d in complaint.deadlines]
    if len(keys) != len(set(keys)):
        yield "two deadlines of one kind at one stage"
