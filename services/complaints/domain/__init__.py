"""The complaint lifecycle: states, allowed transitions and the deadlines each sets.

Pure code: no Kafka, no database, no clock.
- `model`: the complaint's state (`Complaint`, `Deadline`, `EscalationWindow`...),
  decisions, refusals and the ids events are derived from.
- `lifecycle`: `decide` takes a complaint and an action and returns either a
  `Decision` (the new state and the events to publish) or a `Refusal` (a
  reason; nothing changes), dispatching on the action's type to a verb-named
  transition (the stages here; extensions, the review panel, the Ombudsman and
  learning actions in `casework`; their shared helper `Transition` in `transition`).
- `deadlines`: `breach` and `lapse` for a deadline or an escalation window whose
  day has ended, `recalculate` for a changed calendar, and the invariants.

Corporate complaints follow the Complaint Handling Code (two stages).
Statutory social care complaints follow their own procedures (`PROCEDURES`)
and are flagged `statutory` on every event, so Code counts leave them out.
"""

from services.complaints.domain.deadlines import (
    WINDOW_TIMER_KIND,
    breach,
    invariant_violations,
    lapse,
    recalculate,
)
from services.complaints.domain.lifecycle import TRANSITIONS, decide, open_action_for
from services.complaints.domain.model import (
    EVENT_ID_NAMESPACE,
    SETTLED,
    SOURCE,
    Complaint,
    Context,
    Deadline,
    Decision,
    EscalationWindow,
    HistoryEntry,
    OmbudsmanCase,
    Refusal,
    RefusalReason,
    Refused,
    Status,
    TrackedLearningAction,
    action_key,
    complaint_id_for_contact,
    correlation_for,
)

__all__ = [
    "EVENT_ID_NAMESPACE",
    "SETTLED",
    "SOURCE",
    "TRANSITIONS",
    "WINDOW_TIMER_KIND",
    "Complaint",
    "Context",
    "Deadline",
    "Decision",
    "EscalationWindow",
    "HistoryEntry",
    "OmbudsmanCase",
    "Refusal",
    "RefusalReason",
    "Refused",
    "Status",
    "TrackedLearningAction",
    "action_key",
    "breach",
    "complaint_id_for_contact",
    "correlation_for",
    "decide",
    "invariant_violations",
    "lapse",
    "open_action_for",
    "recalculate",
]
