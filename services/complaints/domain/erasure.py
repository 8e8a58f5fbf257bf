"""A complaint without its officers' free text: what erasure leaves of a customer's case.

The reasons officers write (an extension's, a withdrawal's, a close's, a refusal's
detail) are about the person and their case, so they are kept here with the case
rather than on civicpulse.complaints, which is kept for ever. Erasure replaces
them with a marker; dates, stages, outcomes, deadlines and the enumerated reasons
stay, so the case and every KPI read the same.
"""

from services.complaints.domain.model import Complaint
from shared.events.complaints import EscalationRefusalReason

ERASED = "[erased]"
_ENUMERATED = frozenset(r.value for r in EscalationRefusalReason)
# History entries whose detail is an officer's text (the others hold enum values:
# outcomes, decisions, learning action ids).
_TEXT_DETAIL_EVENTS = frozenset(
    {
        "ComplaintDeadlineExtended",
        "ComplaintWithdrawn",
        "ComplaintClosed",
        "ComplaintEscalationRefused",
    }
)


def holds_free_text(complaint: Complaint) -> bool:
    return without_free_text(complaint) != complaint


def without_free_text(complaint: Complaint) -> Complaint:
    deadlines = tuple(
        d.model_copy(update={"extension_reason": ERASED})
        if d.extension_reason not in (None, ERASED)
        else d
        for d in complaint.deadlines
    )
    history = tuple(
        h.model_copy(update={"detail": ERASED})
        if h.event_type in _TEXT_DETAIL_EVENTS and h.detail not in (None, ERASED)
        else h
        for h in complaint.history
    )
    refused = complaint.refused
    if refused is not None and refused not in _ENUMERATED:
        refused = ERASED
    return complaint.model_copy(
        update={"deadlines": deadlines, "history": history, "refused": refused}
    )
