"""Every Kafka topic CivicPulse uses, named once.

Canonical topics are the system of record: metrics rebuild KPIs by replaying
them from the beginning, so they are kept forever (no personal data travels
on them; see DOMAIN.md). Raw and dead-letter topics are working queues and
expire.
"""

from dataclasses import dataclass

DAY_MS = 24 * 60 * 60 * 1000
FOREVER = -1
# The largest record batch a topic takes (`max.message.bytes`), and the largest
# request our producers send (`max_request_size`): one figure for both, so a
# record that fits one fits the other. Kafka's defaults are about the same.
MAX_MESSAGE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    description: str
    max_message_bytes: int = MAX_MESSAGE_BYTES

    @property
    def config(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": "delete",
            "max.message.bytes": str(self.max_message_bytes),
        }


def dead_letter_twin(topic: TopicSpec) -> TopicSpec:
    """Each topic's dead letters: original bytes, source position, reason, time."""
    return TopicSpec(
        name=f"{topic.name}.dead-letter",
        partitions=1,
        retention_ms=90 * DAY_MS,
        description=f"Records from {topic.name} that could not be processed, with the reason.",
    )


CONTACTS_RAW = TopicSpec(
    name="civicpulse.contacts.raw",
    partitions=6,
    retention_ms=14 * DAY_MS,
    description="Contact records as other council systems publish them (JSON, see "
    "shared/schemas/RawContactRecord.json). Intake validates them.",
)
CONTACTS = TopicSpec(
    name="civicpulse.contacts",
    partitions=6,
    retention_ms=FOREVER,
    description="Canonical contact events, keyed by contact_id.",
)
COMPLAINTS = TopicSpec(
    name="civicpulse.complaints",
    partitions=6,
    retention_ms=FOREVER,
    description="Canonical complaint events, keyed by complaint_id.",
)
COMPLAINT_ACTIONS = TopicSpec(
    name="civicpulse.complaints.actions",
    partitions=6,
    retention_ms=30 * DAY_MS,
    description="Case actions from case-management systems (open, acknowledge, respond, "
    "escalate, extend, refer, withdraw, close), keyed by complaint_id. Only the complaints "
    "service writes civicpulse.complaints.",
)
FEEDBACK = TopicSpec(
    name="civicpulse.feedback",
    partitions=6,
    retention_ms=FOREVER,
    description="Satisfaction requests, answers, expiries and opt-outs, keyed by request_id.",
)
NOTIFICATIONS = TopicSpec(
    name="civicpulse.notifications",
    partitions=3,
    retention_ms=30 * DAY_MS,
    description="Messages to send to customers, shaped for GOV.UK Notify (template id, "
    "recipient, personalisation, reference). The one topic that carries contact details: "
    "short retention, restricted access.",
)
METRICS = TopicSpec(
    name="civicpulse.metrics",
    partitions=1,
    retention_ms=FOREVER,
    description="Surges and missed KPI targets raised by the metrics service.",
)

# The system of record, kept forever: what metrics consumes and rebuilds from.
CANONICAL_TOPICS: tuple[TopicSpec, ...] = (CONTACTS, COMPLAINTS, FEEDBACK, METRICS)
PRIMARY_TOPICS: tuple[TopicSpec, ...] = (
    CONTACTS_RAW,
    CONTACTS,
    COMPLAINT_ACTIONS,
    COMPLAINTS,
    FEEDBACK,
    NOTIFICATIONS,
    METRICS,
)
ALL_TOPICS: tuple[TopicSpec, ...] = (
    *PRIMARY_TOPICS,
    *(dead_letter_twin(topic) for topic in PRIMARY_TOPICS),
)
CONTACTS_RAW_DEAD_LETTER = dead_letter_twin(CONTACTS_RAW)
