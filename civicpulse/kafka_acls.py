"""Kafka principals and their least-privilege ACLs (docs/production.md lists the same).

One SASL principal per service process, plus the two outside systems that
feed the raw topics, an ops principal (the only reader of dead letters and,
with the sender, of notifications) and an admin principal that creates topics
and ACLs. A unit test keeps docs/production.md's table in step with this.
"""

from dataclasses import dataclass

from shared.topics import (
    COMPLAINT_ACTIONS,
    COMPLAINTS,
    CONTACTS,
    CONTACTS_RAW,
    FEEDBACK,
    METRICS,
    NOTIFICATIONS,
    TopicSpec,
    dead_letter_twin,
)

ADMIN = "civicpulse-admin"
BROKER = "kafka-broker"  # the broker's own certificate (inter-broker and controller)
SUPER_USERS = (BROKER, ADMIN)
TOPIC_PREFIX = "civicpulse."

# Kafka protocol codes (org.apache.kafka.common.acl / resource). READ and
# WRITE imply DESCRIBE, so no DESCRIBE entry is needed.
RESOURCE_TOPIC, RESOURCE_GROUP = 2, 3
PATTERN_LITERAL, PATTERN_PREFIXED = 3, 4
OPERATION_READ, OPERATION_WRITE = 3, 4
PERMISSION_ALLOW = 3


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str  # what it is, for the settings printout and the docs
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    reads_prefix: str | None = None  # ops reads every CivicPulse topic
    groups_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class Acl:
    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    operation: int

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.principal}"


def _names(*topics: TopicSpec) -> tuple[str, ...]:
    return tuple(topic.name for topic in topics)


def _twins(*topics: TopicSpec) -> tuple[str, ...]:
    return tuple(dead_letter_twin(topic).name for topic in topics)


PRINCIPALS: tuple[Principal, ...] = (
    Principal(
        "civicpulse-intake",
        "intake service",
        reads=_names(CONTACTS_RAW),
        writes=(*_names(CONTACTS), *_twins(CONTACTS_RAW)),
        groups=("civicpulse-intake",),
    ),
    Principal(
        "civicpulse-complaints",
        "complaints service",
        reads=_names(CONTACTS, COMPLAINT_ACTIONS),
        writes=(*_names(COMPLAINTS), *_twins(CONTACTS, COMPLAINT_ACTIONS)),
        groups=("civicpulse-complaints",),
    ),
    Principal(
        "civicpulse-feedback",
        "feedback service",
        reads=_names(CONTACTS, COMPLAINTS),
        writes=(*_names(FEEDBACK, NOTIFICATIONS), *_twins(CONTACTS, COMPLAINTS)),
        groups=("civicpulse-feedback",),
    ),
    Principal(
        "civicpulse-feedback-sender",
        "feedback's Notify sender",
        reads=_names(NOTIFICATIONS),
        writes=_twins(NOTIFICATIONS),
        groups=("civicpulse-feedback-sender",),
    ),
    Principal(
        "civicpulse-metrics",
        "metrics service and its rebuild",
        reads=_names(CONTACTS, COMPLAINTS, FEEDBACK, METRICS),
        writes=(*_names(METRICS), *_twins(CONTACTS, COMPLAINTS, FEEDBACK, METRICS)),
        groups=("civicpulse-metrics",),
    ),
    Principal("civicpulse-crm", "the council's CRM", writes=_names(CONTACTS_RAW)),
    Principal(
        "civicpulse-case-manager", "the case-management system", writes=_names(COMPLAINT_ACTIONS)
    ),
    Principal(
        "civicpulse-ops",
        "operations: dead letters, notifications, redrive",
        reads_prefix=TOPIC_PREFIX,
        groups_prefix="civicpulse-ops",
    ),
)


def principal(name: str) -> Principal:
    return next(p for p in PRINCIPALS if p.name == name)


def acls(who: Principal) -> list[Acl]:
    """The ALLOW entries `who` needs; everything else is denied (no ACL, no access)."""
    entries = [
        Acl(RESOURCE_TOPIC, topic, PATTERN_LITERAL, who.name, OPERATION_READ) for topic in who.reads
    ]
    # WRITE is also what an idempotent producer needs (KIP-679: no cluster ACL).
    entries += [
        Acl(RESOURCE_TOPIC, topic, PATTERN_LITERAL, who.name, OPERATION_WRITE)
        for topic in who.writes
    ]
    # READ on a group covers joining it, committing and reading its offsets (lag).
    entries += [
        Acl(RESOURCE_GROUP, group, PATTERN_LITERAL, who.name, OPERATION_READ)
        for group in who.groups
    ]
    if who.reads_prefix:
        entries.append(
            Acl(RESOURCE_TOPIC, who.reads_prefix, PATTERN_PREFIXED, who.name, OPERATION_READ)
        )
    if who.groups_prefix:
        entries.append(
            Acl(RESOURCE_GROUP, who.groups_prefix, PATTERN_PREFIXED, who.name, OPERATION_READ)
        )
    return entries


def all_acls() -> list[Acl]:
    return [entry for who in PRINCIPALS for entry in acls(who)]


def can_read(who: Principal, topic: str) -> bool:
    return topic in who.reads or bool(who.reads_prefix and topic.startswith(who.reads_prefix))


def markdown_table() -> str:
    """The ACL table of docs/production.md (a unit test compares the two)."""
    rows = [
        "| Principal | Who | Reads | Writes | Consumer groups |",
        "| --- | --- | --- | --- | --- |",
    ]
    for who in PRINCIPALS:
        reads = ", ".join(f"`{topic}`" for topic in who.reads)
        if who.reads_prefix:
            reads = f"every `{who.reads_prefix}*` topic, dead letters included"
        groups = ", ".join(f"`{group}`" for group in who.groups)
        if who.groups_prefix:
            groups = f"`{who.groups_prefix}*`"
        writes = ", ".join(f"`{topic}`" for topic in who.writes)
        rows.append(
            f"| `{who.name}` | {who.role} | {reads or '-'} | {writes or '-'} | {groups or '-'} |"
        )
    return "\n".join(rows) + "\n"
