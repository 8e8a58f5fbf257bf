"""Export the event contracts for publishers and consumers that are not Python.

Writes, under `shared/schemas/`:
- `<EventType>.v<version>.json`: the JSON Schema of every event in the catalogue;
- `RawContactRecord.json`, `ComplaintAction.json`, `NotifyMessage.json`: the
  records on the non-event topics (what council systems send to intake and to
  the complaints service, and what the feedback service hands to a sender);
- `asyncapi.json`: an AsyncAPI 3.0 document of every topic and its messages.

`civicpulse schemas --check` fails when the files differ from the code, and a
unit test runs the same check, so the files cannot drift.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from services.complaints.actions import ACTION_ADAPTER
from services.feedback.notifications import NotifyMessage
from services.intake.records import RawContactRecord
from shared.events.catalogue import ALL_EVENTS, EVENTS_BY_TOPIC
from shared.events.envelope import Event
from shared.topics import ALL_TOPICS, COMPLAINT_ACTIONS, CONTACTS_RAW, NOTIFICATIONS, TopicSpec

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "shared" / "schemas"
# The JSON Schema dialect AsyncAPI 3.0 parsers accept as a payload's schemaFormat.
JSON_SCHEMA_FORMAT = "application/schema+json;version=draft-07"


@dataclass(frozen=True, slots=True)
class RecordContract:
    """A non-event topic's record type."""

    name: str
    adapter: TypeAdapter[Any]
    topic: TopicSpec
    summary: str

    def schema(self) -> dict[str, Any]:
        return {"title": self.name, **self.adapter.json_schema()}


RECORD_CONTRACTS = (
    RecordContract(
        "RawContactRecord",
        TypeAdapter(RawContactRecord),
        CONTACTS_RAW,
        "A contact record from a council system.",
    ),
    RecordContract(
        "ComplaintAction", ACTION_ADAPTER, COMPLAINT_ACTIONS, "A case action from case management."
    ),
    RecordContract(
        "NotifyMessage",
        TypeAdapter(NotifyMessage),
        NOTIFICATIONS,
        "A message for GOV.UK Notify (carries contact details).",
    ),
)


def event_file_name(event_class: type[Event]) -> str:
    return f"{event_class.type_name()}.v{event_class.version()}.json"


def _message(name: str, schema_file: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "title": name,
        "summary": description,
        "contentType": "application/json",
        # A multi-format schema: the payloads are pydantic's JSON Schemas, not
        # AsyncAPI schema objects (whose `discriminator` is a plain string).
        "payload": {"schemaFormat": JSON_SCHEMA_FORMAT, "schema": {"$ref": f"./{schema_file}"}},
    }


def _channel_id(topic: TopicSpec) -> str:
    return topic.name.replace(".", "_").replace("-", "_")


def asyncapi_document() -> dict[str, Any]:
    messages: dict[str, Any] = {
        c.name: _message(c.name, f"{c.name}.json", c.summary) for c in RECORD_CONTRACTS
    }
    channel_messages: dict[str, list[str]] = {c.topic.name: [c.name] for c in RECORD_CONTRACTS}
    for topic, family in EVENTS_BY_TOPIC.items():
        for event_class in family:
            message_id = event_file_name(event_class).removesuffix(".json").replace(".", "_")
            messages[message_id] = _message(
                event_class.__name__,
                event_file_name(event_class),
                (event_class.__doc__ or event_class.__name__).strip().splitlines()[0],
            )
            channel_messages.setdefault(topic.name, []).append(message_id)
    channels: dict[str, Any] = {}
    for topic in ALL_TOPICS:
        ids = channel_messages.get(topic.name, [])
        channels[_channel_id(topic)] = {
            "address": topic.name,
            "description": topic.description,
            "messages": {i: {"$ref": f"#/components/messages/{i}"} for i in ids},
            "bindings": {
                "kafka": {
                    "partitions": topic.partitions,
                    "topicConfiguration": {"retention.ms": topic.retention_ms},
                }
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CivicPulse events",
            "version": "1.0.0",
            "description": "Every topic of CivicPulse and the events on it. Events share one "
            "envelope (event_id, event_type, schema_version, occurred_at, recorded_at, source, "
            "correlation_id, causation_id, subject key, payload); records are keyed by the "
            "subject so one subject's events stay ordered. Dead-letter topics keep the "
            "original bytes, with the reason and source position in `dead_letter.*` headers.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:19092",
                "protocol": "kafka",
                "description": "civicpulse infra up",
            }
        },
        "channels": channels,
        "components": {"messages": messages},
    }


def rendered_files() -> dict[str, str]:
    """File name -> exact content, for every exported contract."""
    files = {event_file_name(cls): _dump(cls.model_json_schema()) for cls in ALL_EVENTS}
    files.update({f"{c.name}.json": _dump(c.schema()) for c in RECORD_CONTRACTS})
    files["asyncapi.json"] = _dump(asyncapi_document())
    return files


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Files that are missing, differ from the code, or are left over."""
    expected = rendered_files()
    stale = [
        name
        for name, content in expected.items()
        if not (directory / name).exists() or (directory / name).read_text() != content
    ]
    leftovers = [p.name for p in directory.glob("*.json") if p.name not in expected]
    return sorted(stale + leftovers)


def write_files(directory: Path = SCHEMA_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    expected = rendered_files()
    for path in directory.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    for name, content in expected.items():
        (directory / name).write_text(content)
    return sorted(expected)
