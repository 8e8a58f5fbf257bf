"""schemathesis against every service's OpenAPI document, on the real stack.

Issue 9, item 6: bounded (at most 50 examples per operation, a fixed seed), no
5xx, and every response matches the documented status codes, content types
and schemas. The services run in-process on the real Kafka and PostgreSQL,
served over loopback HTTP; schemathesis runs as its own process (its CLI).
"""

import asyncio
import re
import sys
from collections.abc import AsyncIterator

import pytest

from tests.integration.conftest import RunningIntake
from tests.support.metrics import OPS
from tests.support.services import ServiceUnderTest, four_services, served

pytestmark = pytest.mark.integration

CHECKS = (
    "not_a_server_error,status_code_conformance,"
    "response_schema_conformance,content_type_conformance"
)
MAX_EXAMPLES = 50
SEED = 20261201


@pytest.fixture(scope="module")
async def services(
    intake: RunningIntake, kafka_bootstrap: str, database_url: str, topics: None
) -> AsyncIterator[dict[str, ServiceUnderTest]]:
    async with four_services(intake, kafka_bootstrap, database_url) as running:
        yield running


async def schemathesis(base_url: str, headers: dict[str, str]) -> tuple[int, str]:
    header_options = [
        option for name, value in headers.items() for option in ("-H", f"{name}: {value}")
    ]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--no-shrink",
        *header_options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["intake", "complaints", "feedback", "metrics"])
async def test_every_response_matches_the_openapi_document(
    services: dict[str, ServiceUnderTest], name: str
) -> None:
    service = services[name]
    headers = OPS if name == "metrics" else service.auth  # ops may use every operation
    async with served(service.app) as base_url:
        code, output = await schemathesis(base_url, headers)

    operations = sum(len(item) for item in service.app.openapi()["paths"].values())
    tested = re.search(r"Tested: (\d+)", output)
    generated = re.search(r"\d+ generated, .*", output)
    print(f"schemathesis {name}: {operations} operations; {generated and generated[0]}")
    assert code == 0, output
    assert tested is not None, output
    assert int(tested[1]) == operations, output
    assert generated is not None, output
    assert int(generated[0].split()[0]) >= operations, output
