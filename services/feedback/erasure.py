"""What feedback's erasure receipt says stays on topics: pure, from what the store counted.

Feedback deletes the contact route, unsent messages and the text of the
customer's comments in one transaction. What it published stays on Kafka until
retention removes it: messages on `civicpulse.notifications` (30 days) and their
dead letters (90 days) hold the email or phone number and a live answer link;
`civicpulse.feedback` (kept for ever) holds only the pseudonymous reference and
scores, since SatisfactionResponded version 2 carries a `comment_ref`, not the text.
"""

from datetime import datetime

from services.feedback.comments_store import CustomerFootprint
from services.feedback.settings import SERVICE
from shared.erasure import DeletedRows, ErasureReceipt, RemainingCopy, remaining_copy
from shared.topics import FEEDBACK, NOTIFICATIONS, dead_letter_twin


def receipt(customer_ref: str, held: CustomerFootprint, erased_at: datetime) -> ErasureReceipt:
    deleted = [DeletedRows(service=SERVICE, table=t, rows=n) for t, n in held.rows.items()]
    return ErasureReceipt.of(customer_ref, erased_at, deleted, remaining(held, erased_at))


def remaining(held: CustomerFootprint, erased_at: datetime) -> list[RemainingCopy]:
    copies: list[RemainingCopy] = []
    if held.last_requested_at is not None:
        copies.append(
            remaining_copy(
                SERVICE,
                NOTIFICATIONS,
                held.last_requested_at,
                personal_data=True,
                note="Survey messages already relayed: the email or mobile number and an "
                "answer link. Restricted to the ops and sender principals; the sender no "
                "longer delivers them, as the route is gone.",
            )
        )
        copies.append(
            remaining_copy(
                SERVICE,
                dead_letter_twin(NOTIFICATIONS),
                erased_at,
                personal_data=True,
                note="Only if one of those messages was dead-lettered (before this erasure); "
                "ops principal only.",
            )
        )
    if held.requests:
        old = held.answers_before_comments_kept_apart
        copies.append(
            remaining_copy(
                SERVICE,
                FEEDBACK,
                erased_at,
                personal_data=old > 0,
                note=(
                    f"{held.requests} survey request(s) and their answers, kept for ever for "
                    "the KPIs: the pseudonymous customer_ref and scores only, no contact "
                    "details and no comment text (SatisfactionResponded v2 carries a "
                    "comment_ref)."
                )
                + (
                    f" {old} answer(s) were published before comments were kept apart, as "
                    "SatisfactionResponded v1, which may carry comment text: see "
                    "docs/production.md, 'Data held and for how long'."
                    if old
                    else ""
                ),
            )
        )
    return copies
