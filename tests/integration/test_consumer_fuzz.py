"""Hostile bytes through the real consumers, reconciled against a ledger of what was sent.

Quality bar (docs of issue 9, item 6): "every record ends published, duplicate,
or dead-lettered with a reason; no consumer loops on one record", and "exactly
once is proven against an independent ledger of what was sent, never against
what arrived". Hypothesis generates the records; they are published to the raw
topic and the actions topic of the real broker, consumed by the real intake
(the session's, tests/integration/conftest.py) and a real complaints service,
and every sent offset is then accounted for. A good record sent after the fuzz
must arrive within 30 s: nothing blocks behind a poison record.
"""

import asyncio
import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.complaints.app import create_app
from services.complaints.settings import ComplaintsSettings
from shared.dead_letters import DeadLetter
from shared.events.envelope import utc_now
from shared.topics import (
    COMPLAINT_ACTIONS,
    COMPLAINTS,
    CONTACTS,
    CONTACTS_RAW,
    CONTACTS_RAW_DEAD_LETTER,
    MAX_MESSAGE_BYTES,
    TopicSpec,
    dead_letter_twin,
)
from tests.integration.conftest import RunningIntake
from tests.support.kafka import (
    Record,
    committed_up_to,
    eventually,
    kcat_produce,
    new_group_at_end,
    read_to_end,
    read_topic,
)

pytestmark = pytest.mark.integration
EXAMPLES_PER_TOPIC = 200
ACTIONS_DEAD_LETTER = dead_letter_twin(COMPLAINT_ACTIONS)

# The corpus of issue 9: each of these once crashed a consumer or blocked a partition.
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
HUGE_INTEGER = b'{"record_type": "contact_received", "wait_seconds": ' + b"9" * 5000 + b"}"
NUL_BYTES = b'{"record_type": "contact_\x00received"}\x00\x00'
NOT_UTF_8 = b'{"record_type": "\xff\xfe\xc3\x28"}'
# Invalid (not an object); it fits the raw topic, but not with the dead-letter headers.
NEAR_ONE_MEGABYTE = b"[" + b"1," * ((MAX_MESSAGE_BYTES - 203) // 2) + b"1]"


def overflowing(record: dict[str, Any]) -> bytes:
    return json.dumps({**record, "occurred_at": "9999-12-31T23:59:59-01:00"}).encode()


# -- what the fuzz sends ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """One ledger line: what was sent where, and the subject it should be accounted to."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    subject: str | None  # the contact or complaint it was built for; None for noise


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


def raw_contact(run: str, n: str) -> dict[str, Any]:
    return {
        "record_type": "contact_received",
        "idempotency_key": f"{run}-{n}",
        "source": "fuzz",
        "contact_id": f"{run}-{n}",
        "occurred_at": (utc_now() - timedelta(minutes=5)).isoformat(),
        "channel": "phone",
        "service_area": "waste",
        "kind": "enquiry",
        "wait_seconds": 3,
    }


def open_action(run: str, n: str) -> dict[str, Any]:
    return {
        "action": "open",
        "action_id": f"open-{run}-{n}",
        "complaint_id": f"CMP-{run}-{n}",
        "source": "case-manager",
        "occurred_at": (utc_now() - timedelta(minutes=5)).isoformat(),
        "service_area": "waste",
        "channel": "web",
    }


ID_FIELDS = frozenset({"idempotency_key", "contact_id", "complaint_id", "action_id"})


@st.composite
def mutated(draw: st.DrawFn, record: dict[str, Any]) -> dict[str, Any]:
    """The record with one field replaced, dropped or added (ids left alone)."""
    field = draw(st.sampled_from([*sorted(set(record) - ID_FIELDS), "extra"]))
    how = draw(st.sampled_from(["replace", "drop"]))
    changed = dict(record)
    if how == "drop":
        changed.pop(field, None)
    else:
        changed[field] = draw(JSON_VALUES)
    return changed


# A drawn case: ("noise", bytes) | ("fresh", dict) | ("again", None) | ("conflict", None)
# | ("miskeyed", dict) ; "again" re-sends the previous built record as it was.
def cases(build: Any) -> st.SearchStrategy[tuple[str, Any]]:
    fresh = st.uuids().map(lambda u: build(u.hex[:12]))
    return st.one_of(
        st.tuples(st.just("noise"), st.binary(max_size=300)),
        st.tuples(st.just("noise"), JSON_VALUES.map(lambda v: json.dumps(v).encode())),
        st.tuples(st.just("fresh"), fresh),
        st.tuples(st.just("fresh"), fresh.flatmap(mutated)),
        st.tuples(st.just("again"), st.none()),
        st.tuples(st.just("conflict"), st.none()),
        st.tuples(st.just("miskeyed"), fresh),
    )


def generate(build: Any, examples: int) -> list[tuple[str, Any]]:
    """Draw `examples` cases with hypothesis (generation only: the real stack judges them)."""
    drawn: list[tuple[str, Any]] = []

    @settings(
        max_examples=examples,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(cases(build))
    def collect(case: tuple[str, Any]) -> None:
        drawn.append(case)

    collect()
    return drawn


def to_records(
    drawn: list[tuple[str, Any]], subject_field: str, conflict_field: str
) -> list[tuple[bytes | None, bytes, str | None]]:
    """(key, value, subject) per case; keys are the subject, as publishers are told to."""
    out: list[tuple[bytes | None, bytes, str | None]] = []
    last: tuple[bytes | None, bytes, str | None] | None = None
    last_document: dict[str, Any] | None = None
    for kind, body in drawn:
        if kind == "noise":
            out.append((None, body, None))
            continue
        if kind in ("again", "conflict"):
            if last is None or last_document is None:
                continue
            if kind == "again":
                out.append(last)
            else:
                changed = {**last_document, conflict_field: "9"}
                out.append((last[0], json.dumps(changed).encode(), last[2]))
            continue
        subject = str(body[subject_field])
        key = b"wrong-key" if kind == "miskeyed" else subject.encode()
        last = (key, json.dumps(body).encode(), subject)
        last_document = body
        out.append(last)
    return out


async def send_all(
    bootstrap: str, topic: TopicSpec, records: list[tuple[bytes | None, bytes, str | None]]
) -> list[Sent]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        max_request_size=MAX_MESSAGE_BYTES,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic.name, value, key=key) for key, value, _ in records]
        metadata = [await future for future in futures]
    finally:
        await producer.stop()
    return [
        Sent(topic.name, meta.partition, meta.offset, key, value, subject)
        for (key, value, subject), meta in zip(records, metadata, strict=True)
    ]


def ends_of(sent: list[Sent]) -> dict[TopicPartition, int]:
    ends: dict[TopicPartition, int] = {}
    for record in sent:
        tp = TopicPartition(record.topic, record.partition)
        ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    return ends


def letters_by_position(records: list[Record]) -> dict[tuple[str, int, int], list[DeadLetter]]:
    found: dict[tuple[str, int, int], list[DeadLetter]] = {}
    for record in records:
        letter = DeadLetter.from_record(record.value, record.key, record.headers)
        position = (letter.source.topic, letter.source.partition, letter.source.offset)
        found.setdefault(position, []).append(letter)
    return found


@dataclass
class Reconciled:
    outcomes: Counter[str]
    unaccounted: list[Sent]
    events_per_subject: Counter[str]
    reasons: Counter[str]


def reconcile(sent: list[Sent], letters: list[Record], events: list[Record]) -> Reconciled:
    """Each sent record is dead-lettered (by position) or accounted to its subject's event."""
    by_position = letters_by_position(letters)
    subjects = {record.subject for record in sent if record.subject}
    events_per_subject = Counter(
        key for record in events if (key := (record.key or b"").decode()) in subjects
    )
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    unaccounted: list[Sent] = []
    seen: set[str] = set()
    for record in sent:
        found = by_position.get((record.topic, record.partition, record.offset))
        if found:
            outcomes["dead-lettered"] += 1
            reasons[found[0].error_type] += 1
            assert all(letter.reason for letter in found)
        elif record.subject and events_per_subject[record.subject]:
            outcomes["duplicate" if record.subject in seen else "published"] += 1
            seen.add(record.subject)
        else:
            unaccounted.append(record)
    return Reconciled(outcomes, unaccounted, events_per_subject, reasons)


# -- the services -------------------------------------------------------------------


@dataclass
class RunningComplaints:
    settings: ComplaintsSettings
    relay_backlog: Any


@pytest.fixture(scope="module")
async def complaints(
    kafka_bootstrap: str, database_url: str, topics: None
) -> AsyncIterator[RunningComplaints]:
    settings = ComplaintsSettings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        complaints_group_id=await new_group_at_end(
            kafka_bootstrap, [CONTACTS.name, COMPLAINT_ACTIONS.name], "test-fuzz-complaints"
        ),
        complaints_timer_poll_seconds=0.5,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://complaints"):
            yield RunningComplaints(settings, app.state.complaints.relay.backlog)


async def eventually_async(count: Callable[[], Awaitable[int]], *, within_seconds: float) -> bool:
    """Whether `count()` falls to 0 within the time (the outbox relay drains)."""
    deadline = time.monotonic() + within_seconds
    while await count():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def arrives(bootstrap: str, topic: str, key: str, *, within_seconds: float) -> float | None:
    """Seconds until a record keyed `key` is on `topic`, or None if not within the time."""
    started = time.monotonic()
    records = await read_topic(
        bootstrap,
        topic,
        until=lambda rs: any(r.key == key.encode() for r in rs),
        within_seconds=within_seconds,
    )
    if any(r.key == key.encode() for r in records):
        return time.monotonic() - started
    return None


async def test_fuzzed_records_all_end_published_duplicate_or_dead_lettered(
    intake: RunningIntake, complaints: RunningComplaints, kafka_bootstrap: str
) -> None:
    run = f"fz{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    raw = to_records(
        generate(lambda n: raw_contact(run, n), EXAMPLES_PER_TOPIC),
        "contact_id",
        "wait_seconds",
    )
    actions = to_records(
        generate(lambda n: open_action(run, n), EXAMPLES_PER_TOPIC), "complaint_id", "channel"
    )
    corpus = [DEEP_JSON, HUGE_INTEGER, NUL_BYTES, NOT_UTF_8, NEAR_ONE_MEGABYTE]
    raw += [(None, value, None) for value in corpus]
    raw.append((None, overflowing(raw_contact(run, "overflow")), None))
    actions += [(None, value, None) for value in corpus]
    actions.append((None, overflowing(open_action(run, "overflow")), None))
    sent_raw = await send_all(kafka_bootstrap, CONTACTS_RAW, raw)
    sent_actions = await send_all(kafka_bootstrap, COMPLAINT_ACTIONS, actions)
    sent_at = time.monotonic()

    # Nothing blocks: a good record of each kind, sent after the fuzz, arrives.
    good_contact, good_open = raw_contact(run, "after"), open_action(run, "after")
    await send_all(
        kafka_bootstrap,
        CONTACTS_RAW,
        [(good_contact["contact_id"].encode(), json.dumps(good_contact).encode(), None)],
    )
    await send_all(
        kafka_bootstrap,
        COMPLAINT_ACTIONS,
        [(good_open["complaint_id"].encode(), json.dumps(good_open).encode(), None)],
    )
    contact_after = await arrives(
        kafka_bootstrap, CONTACTS.name, good_contact["contact_id"], within_seconds=30
    )
    complaint_after = await arrives(
        kafka_bootstrap, COMPLAINTS.name, good_open["complaint_id"], within_seconds=30
    )
    assert contact_after is not None, "a good contact sent after the fuzz did not arrive in 30 s"
    assert complaint_after is not None, "a good action sent after the fuzz had no effect in 30 s"

    # Every record sent was consumed and committed, and the outbox is drained:
    # from here the topics are read to their end offsets.
    assert await committed_up_to(
        kafka_bootstrap, intake.settings.intake_group_id, ends_of(sent_raw), within_seconds=30
    )
    assert await committed_up_to(
        kafka_bootstrap,
        complaints.settings.complaints_group_id,
        ends_of(sent_actions),
        within_seconds=30,
    )
    assert await eventually_async(lambda: complaints.relay_backlog(), within_seconds=30)

    contacts = reconcile(
        sent_raw,
        await read_to_end(kafka_bootstrap, CONTACTS_RAW_DEAD_LETTER.name),
        await read_to_end(kafka_bootstrap, CONTACTS.name),
    )
    cases = reconcile(
        sent_actions,
        await read_to_end(kafka_bootstrap, ACTIONS_DEAD_LETTER.name),
        [
            r
            for r in await read_to_end(kafka_bootstrap, COMPLAINTS.name)
            if r.headers.get("event_type") == b"ComplaintOpened"
        ],
    )
    print(
        f"\nfuzz: {len(sent_raw)} raw records {dict(contacts.outcomes)} "
        f"dead letters by type {dict(contacts.reasons)}"
        f"\nfuzz: {len(sent_actions)} action records {dict(cases.outcomes)} "
        f"dead letters by type {dict(cases.reasons)}"
        f"\nfuzz: sent in {sent_at - started:.1f} s; good contact after {contact_after:.1f} s, "
        f"good action after {complaint_after:.1f} s; all in {time.monotonic() - started:.1f} s"
    )

    assert contacts.unaccounted == []
    assert cases.unaccounted == []
    assert sum(contacts.outcomes.values()) == len(sent_raw)
    assert sum(cases.outcomes.values()) == len(sent_actions)
    # Exactly once: each subject that was published has one canonical event.
    assert [s for s, n in contacts.events_per_subject.items() if n != 1] == []
    assert [s for s, n in cases.events_per_subject.items() if n != 1] == []
    # The corpus was dead-lettered, the near-1 MB records cut to fit.
    for sent in (sent_raw, sent_actions):
        letters = letters_by_position(
            await read_to_end(kafka_bootstrap, f"{sent[0].topic}.dead-letter")
        )
        for record in sent[-len(corpus) - 1 :]:
            assert (record.topic, record.partition, record.offset) in letters
        [cut] = letters[(sent[-2].topic, sent[-2].partition, sent[-2].offset)]
        assert cut.error_type == "too_large"
        assert cut.original_size == len(NEAR_ONE_MEGABYTE)
        assert cut.original_sha256 == hashlib.sha256(NEAR_ONE_MEGABYTE).hexdigest()
        assert NEAR_ONE_MEGABYTE.startswith(cut.original)


def too_large_count(intake: RunningIntake) -> float:
    labels = {"reason": "too_large"}
    return intake.registry.get_sample_value("intake_records_dead_lettered_total", labels) or 0.0


async def test_poison_records_sent_by_kcat_are_dead_lettered_and_the_next_record_arrives(
    intake: RunningIntake, kafka_bootstrap: str
) -> None:
    """Issue 9, "What it must show": kcat, a client sharing no code with CivicPulse."""
    run = f"kc{uuid.uuid4().hex[:8]}"
    poison = {
        "deep-json": DEEP_JSON,
        "huge-integer": HUGE_INTEGER,
        "overflowing-date": overflowing(raw_contact(run, "overflow")),
        "nul-bytes": NUL_BYTES,
        "not-utf-8": NOT_UTF_8,
        "near-1-mb": NEAR_ONE_MEGABYTE,
    }
    assert not any(b"\n" in value for value in poison.values())  # kcat splits on newlines
    too_large_before = too_large_count(intake)
    started = time.monotonic()
    for name, value in poison.items():
        await asyncio.to_thread(
            kcat_produce,
            kafka_bootstrap,
            CONTACTS_RAW.name,
            value,
            key=f"{run}-{name}",
            config=["message.max.bytes=2000000"],
        )
    good = raw_contact(run, "good")
    await asyncio.to_thread(
        kcat_produce,
        kafka_bootstrap,
        CONTACTS_RAW.name,
        json.dumps(good).encode(),
        key=good["contact_id"],
    )

    arrived = await arrives(kafka_bootstrap, CONTACTS.name, good["contact_id"], within_seconds=30)
    assert arrived is not None, "the good record sent after the poison did not arrive in 30 s"
    letters = {
        (r.key or b"").decode(): DeadLetter.from_record(r.value, r.key, r.headers)
        for r in await read_to_end(kafka_bootstrap, CONTACTS_RAW_DEAD_LETTER.name)
        if (r.key or b"").startswith(run.encode())
    }
    print(
        f"\nkcat: good record after {arrived} s (from the first poison record: "
        f"{time.monotonic() - started:.1f} s); dead letters: "
        + ", ".join(f"{key[len(run) + 1 :]}={letter.error_type}" for key, letter in letters.items())
    )

    assert arrived < 30
    assert sorted(letters) == sorted(f"{run}-{name}" for name in poison)
    for name, value in poison.items():
        letter = letters[f"{run}-{name}"]
        assert letter.reason
        assert letter.source.topic == CONTACTS_RAW.name
        if name == "near-1-mb":
            assert letter.error_type == "too_large"
            # Counted like any other dead letter (the CivicPulseDeadLettersGrowing alert).
            assert await eventually(lambda: too_large_count(intake) == too_large_before + 1)
            assert letter.original_sha256 == hashlib.sha256(value).hexdigest()
        else:
            assert letter.original == value
