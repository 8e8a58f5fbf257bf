"""What the annual complaints report lists, noted from complaint events: pure, no I/O.

Counters answer "how many"; the Code's annual report also asks "why" and
"which": the reasons for extensions and refusals, the Ombudsman's decisions,
each learning action with its owner and due date and whether it was done.
One `ComplaintNote` per such fact, dated on the event's local day.
"""

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any
from uuid import UUID

from services.metrics.periods import local_day
from shared.events import Event
from shared.events.complaints import (
    ComplaintClosed,
    ComplaintDeadlineExtended,
    ComplaintEscalationRefused,
    ComplaintEvent,
    ComplaintLearningActionCompleted,
    ComplaintOmbudsmanDecided,
    ComplaintReferredToOmbudsman,
    ComplaintResponded,
    ComplaintWithdrawn,
)


class NoteKind(StrEnum):
    RESPONSE = "response"  # stage and outcome
    EXTENSION = "extension"  # stage, deadline (its reason stays with the case)
    ESCALATION_REFUSED = "escalation_refused"  # reason (its detail stays with the case)
    CLOSED = "closed"  # closed_because
    WITHDRAWN = "withdrawn"
    OMBUDSMAN_REFERRAL = "ombudsman_referral"  # ombudsman, reference, grounds
    OMBUDSMAN_DECISION = "ombudsman_decision"  # decision, reference
    LEARNING_ACTION = "learning_action"  # id, description, owner team, due date
    LEARNING_ACTION_DONE = "learning_action_done"  # id, completed on, on time


@dataclass(frozen=True, slots=True)
class ComplaintNote:
    event_id: UUID
    complaint_id: str
    kind: NoteKind
    day: date
    procedure: str
    service_area: str
    stage: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def complaint_notes(event: Event) -> list[ComplaintNote]:
    """The report's notes of one event; none for events it only counts."""
    if not isinstance(event, ComplaintEvent):
        return []
    day = local_day(event.occurred_at)

    def note(
        kind: NoteKind, payload: Any, stage: int | None = None, **detail: Any
    ) -> ComplaintNote:
        return ComplaintNote(
            event.event_id,
            event.complaint_id,
            kind,
            day,
            payload.procedure.value,
            payload.service_area,
            stage,
            {k: (v.isoformat() if isinstance(v, date) else v) for k, v in detail.items()},
        )

    match event:
        case ComplaintResponded(payload=p):
            notes = [note(NoteKind.RESPONSE, p, p.stage, outcome=p.outcome.value)]
            for n, action in enumerate(p.learning_actions, start=1):
                notes.append(
                    note(
                        NoteKind.LEARNING_ACTION,
                        p,
                        p.stage,
                        learning_action_id=action.learning_action_id or f"{p.stage}.{n}",
                        description=action.description,
                        owner_team=action.owner_team,
                        due_date=action.due_date,
                    )
                )
            return notes
        case ComplaintDeadlineExtended(payload=p):
            return [
                # The reason's text stays with the case in the complaints service.
                note(NoteKind.EXTENSION, p, p.stage, deadline=p.deadline.value)
            ]
        case ComplaintEscalationRefused(payload=p):
            return [note(NoteKind.ESCALATION_REFUSED, p, p.stage, reason=p.reason.value)]
        case ComplaintClosed(payload=p):
            return [note(NoteKind.CLOSED, p, p.final_stage, closed_because=p.closed_because.value)]
        case ComplaintWithdrawn(payload=p):
            return [note(NoteKind.WITHDRAWN, p, p.stage)]
        case ComplaintReferredToOmbudsman(payload=p):
            return [
                note(
                    NoteKind.OMBUDSMAN_REFERRAL,
                    p,
                    ombudsman=p.ombudsman,
                    reference=p.ombudsman_reference,
                    grounds=p.grounds,
                )
            ]
        case ComplaintOmbudsmanDecided(payload=p):
            return [
                note(
                    NoteKind.OMBUDSMAN_DECISION,
                    p,
                    decision=p.decision,
                    reference=p.ombudsman_reference,
                )
            ]
        case ComplaintLearningActionCompleted(payload=p):
            return [
                note(
                    NoteKind.LEARNING_ACTION_DONE,
                    p,
                    learning_action_id=p.learning_action_id,
                    completed_on=p.completed_on,
                    on_time=p.on_time,
                )
            ]
    return []
