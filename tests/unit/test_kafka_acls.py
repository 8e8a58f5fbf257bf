"""The principals' ACLs and the secure broker's configuration.

Issue 12, "Kafka security": `StandardAuthorizer` with one principal per
service holding least-privilege ACLs, listed in docs/production.md (intake
writes `civicpulse.contacts`, only an ops principal reads dead letters and
notifications, and so on).
"""

from pathlib import Path

from civicpulse.kafka_acls import (
    OPERATION_READ,
    OPERATION_WRITE,
    PATTERN_LITERAL,
    PRINCIPALS,
    RESOURCE_TOPIC,
    acls,
    can_read,
    markdown_table,
    principal,
)
from civicpulse.secure_infra import render_secure_properties
from shared.topics import ALL_TOPICS, CONTACTS, NOTIFICATIONS

ROOT = Path(__file__).resolve().parents[2]


def test_docs_list_exactly_these_acls() -> None:
    assert markdown_table() in (ROOT / "docs" / "production.md").read_text()


def test_intake_reads_raw_and_writes_contacts_only() -> None:
    entries = {(a.resource_name, a.operation) for a in acls(principal("civicpulse-intake"))}
    assert entries == {
        ("civicpulse.contacts.raw", OPERATION_READ),
        ("civicpulse.contacts", OPERATION_WRITE),
        ("civicpulse.contacts.raw.dead-letter", OPERATION_WRITE),
        ("civicpulse-intake", OPERATION_READ),  # its consumer group
    }


def test_only_ops_and_the_sender_read_notifications_and_only_ops_dead_letters() -> None:
    readers = {p.name for p in PRINCIPALS if can_read(p, NOTIFICATIONS.name)}
    assert readers == {"civicpulse-ops", "civicpulse-feedback-sender"}
    for topic in ALL_TOPICS:
        if topic.name.endswith(".dead-letter"):
            assert {p.name for p in PRINCIPALS if can_read(p, topic.name)} == {"civicpulse-ops"}


def test_each_topic_has_one_kind_of_writer_and_canonical_contacts_only_intake() -> None:
    writers = {p.name for p in PRINCIPALS if CONTACTS.name in p.writes}
    assert writers == {"civicpulse-intake"}
    for who in PRINCIPALS:
        for entry in acls(who):
            if entry.resource_type == RESOURCE_TOPIC and entry.pattern_type == PATTERN_LITERAL:
                assert entry.resource_name in {t.name for t in ALL_TOPICS}, entry


def test_the_secure_broker_denies_by_default_and_has_no_plaintext_listener(tmp_path: Path) -> None:
    text = render_secure_properties(9093, 9094, 9095, tmp_path / "data", tmp_path / "tls")
    props = dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))
    assert props["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:kafka-broker;User:civicpulse-admin"
    assert "PLAINTEXT" not in props["listener.security.protocol.map"]
    assert props["listeners"].startswith("SASL_SSL://127.0.0.1:9093,")
    assert props["listener.name.internal.ssl.client.auth"] == "required"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
