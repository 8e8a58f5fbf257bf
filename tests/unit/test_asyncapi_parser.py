"""The AsyncAPI document passes the official parser (`@asyncapi/parser`, npm).

Issue 9, item 7: the parser reported errors on shared/schemas/asyncapi.json
(a `discriminator` object where AsyncAPI's schema object wants a string, and
payloads without the `schemaFormat` of JSON Schema). The parser is pinned in
tools/asyncapi/package.json and installed by scripts/bootstrap.sh (`npm ci`);
without it these tests fail rather than skip.
"""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from civicpulse import schemas

TOOL = Path(__file__).resolve().parents[2] / "tools" / "asyncapi"


def diagnostics(document: Path) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "node is not installed (scripts/bootstrap.sh needs node 20)"
    assert (TOOL / "node_modules" / "@asyncapi" / "parser").is_dir(), (
        f"run `npm ci` in {TOOL} (scripts/bootstrap.sh does)"
    )
    result = subprocess.run(
        [node, str(TOOL / "validate.mjs"), str(document)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def errors_in(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in found if d["severity"] == "error"]


def test_the_asyncapi_document_has_no_parser_errors() -> None:
    found = diagnostics(schemas.SCHEMA_DIR / "asyncapi.json")

    assert errors_in(found) == []


@pytest.fixture
def copied_schemas(tmp_path: Path) -> Path:
    """The exported schemas in a scratch directory, so a copy can be broken."""
    for path in schemas.SCHEMA_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _broken(directory: Path, damage: Any) -> Path:
    path = directory / "asyncapi.json"
    document = json.loads(path.read_text())
    damage(document)
    path.write_text(json.dumps(document))
    return path


def test_a_payload_with_an_object_discriminator_is_an_error(copied_schemas: Path) -> None:
    """The old form: pydantic's schema inline as an AsyncAPI schema object."""
    raw = json.loads((copied_schemas / "RawContactRecord.json").read_text())

    def inline_payload(document: dict[str, Any]) -> None:
        document["components"]["messages"]["RawContactRecord"]["payload"] = raw

    found = diagnostics(_broken(copied_schemas, inline_payload))

    assert any("discriminator" in d["message"] for d in errors_in(found)), found


def test_a_payload_referring_to_a_missing_schema_is_an_error(copied_schemas: Path) -> None:
    (copied_schemas / "ComplaintOpened.v1.json").unlink()

    found = diagnostics(copied_schemas / "asyncapi.json")

    assert errors_in(found) != [], found


def test_a_channel_naming_an_unknown_message_is_an_error(copied_schemas: Path) -> None:
    def dangle(document: dict[str, Any]) -> None:
        channel = document["channels"]["civicpulse_contacts"]
        channel["messages"]["Nope"] = {"$ref": "#/components/messages/Nope_v1"}

    found = diagnostics(_broken(copied_schemas, dangle))

    assert errors_in(found) != [], found
