"""The exported contracts in shared/schemas/ are the code's, and they really validate."""

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from civicpulse import schemas
from shared.events.catalogue import ALL_EVENTS
from shared.events.envelope import Event
from tests.unit.test_events import FACTORIES


def test_the_exported_schema_files_match_the_code() -> None:
    stale = schemas.stale_files()

    assert stale == [], f"run `civicpulse schemas` and commit: {stale}"


def test_a_changed_model_would_be_reported_as_stale(tmp_path: Path) -> None:
    schemas.write_files(tmp_path)
    (tmp_path / "ContactReceived.v1.json").write_text("{}\n")
    (tmp_path / "Leftover.v9.json").write_text("{}\n")

    assert schemas.stale_files(tmp_path) == ["ContactReceived.v1.json", "Leftover.v9.json"]


def _schema_of(event_class: type[Event]) -> dict[str, Any]:
    path = schemas.SCHEMA_DIR / schemas.event_file_name(event_class)
    document: dict[str, Any] = json.loads(path.read_text())
    return document


@pytest.mark.parametrize("event_class", ALL_EVENTS, ids=lambda cls: cls.__name__)
def test_every_event_as_published_validates_against_its_exported_schema(
    event_class: type[Event],
) -> None:
    event = FACTORIES[event_class]()

    jsonschema.validate(json.loads(event.to_bytes()), _schema_of(event_class))


def test_the_exported_schema_refuses_an_event_with_an_unknown_channel() -> None:
    from shared.events import ContactReceived

    document = json.loads(FACTORIES[ContactReceived]().to_bytes())
    document["payload"]["channel"] = "carrier_pigeon"

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, _schema_of(ContactReceived))


def test_the_asyncapi_document_names_every_topic_and_resolves_every_message() -> None:
    document = json.loads((schemas.SCHEMA_DIR / "asyncapi.json").read_text())

    addresses = {channel["address"] for channel in document["channels"].values()}
    assert "civicpulse.contacts.raw" in addresses
    assert "civicpulse.contacts.raw.dead-letter" in addresses
    for channel in document["channels"].values():
        for reference in channel["messages"].values():
            message_id = reference["$ref"].removeprefix("#/components/messages/")
            message = document["components"]["messages"][message_id]
            assert message["payload"]["schemaFormat"] == schemas.JSON_SCHEMA_FORMAT
            schema_file = message["payload"]["schema"]["$ref"].removeprefix("./")
            assert (schemas.SCHEMA_DIR / schema_file).exists()
