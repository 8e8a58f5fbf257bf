"""The complaints service's part of erasure: officers' free text goes, the receipt says
what stays on topics until when. The customer_ref stays on the complaint and its events:
it is pseudonymous, and the complaint KPIs and the Code's annual report count by case.
"""

from datetime import datetime

from services.complaints.settings import SERVICE
from services.complaints.store import CustomerCases
from shared.erasure import DeletedRows, ErasureReceipt, RemainingCopy, remaining_copy
from shared.topics import COMPLAINT_ACTIONS, COMPLAINTS, dead_letter_twin


def receipt(customer_ref: str, cases: CustomerCases, erased_at: datetime) -> ErasureReceipt:
    deleted = [
        DeletedRows(
            service=SERVICE, table="complaints (officers' free text removed)", rows=cases.scrubbed
        )
    ]
    return ErasureReceipt.of(customer_ref, erased_at, deleted, remaining(cases, erased_at))


def remaining(cases: CustomerCases, erased_at: datetime) -> list[RemainingCopy]:
    if not cases.complaints:
        return []
    copies = []
    if cases.last_updated_at is not None:
        copies.append(
            remaining_copy(
                SERVICE,
                COMPLAINT_ACTIONS,
                cases.last_updated_at,
                personal_data=True,
                note="Case actions the case-management system sent through the topic (not "
                "those sent over HTTP) carry the officers' reasons as written.",
            )
        )
    copies.append(
        remaining_copy(
            SERVICE,
            dead_letter_twin(COMPLAINT_ACTIONS),
            erased_at,
            personal_data=True,
            note="Only if one of those actions was dead-lettered; ops principal only.",
        )
    )
    old = cases.published_before_v2
    copies.append(
        remaining_copy(
            SERVICE,
            COMPLAINTS,
            erased_at,
            personal_data=old > 0,
            note=(
                f"{cases.complaints} complaint(s)' events, kept for ever for the KPIs and the "
                "annual report: the pseudonymous customer_ref on ComplaintOpened, dates, "
                "stages and outcomes; no officers' free text (the current versions say only "
                "whether a reason was given)."
            )
            + (
                f" {old} complaint(s) had events published before reasons were kept apart, "
                "whose old versions may carry reason text: see docs/production.md, "
                "'Data held and for how long'."
                if old
                else ""
            ),
        )
    )
    return copies
