"""`ServiceProcess.wait_healthy` trusts only its own process's answer.

A port picked free can be taken by another run before the service binds it
(uvicorn binds after start-up): that run's service then answered the health
check, the test talked to it, and failed at setup when it went away.
"""

import threading
from collections.abc import Iterator
from http.server import HTTPServer
from pathlib import Path

import pytest

from civicpulse.infra import pick_free_port
from civicpulse.processes import ServiceProcess
from tests.support.healthz_stub import Healthy

STUB = "tests.support.healthz_stub"


@pytest.fixture
def foreign_service() -> Iterator[int]:
    """Another run's service, healthy on a port."""
    server = HTTPServer(("127.0.0.1", 0), Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_service_answering_on_its_own_port_is_healthy(tmp_path: Path) -> None:
    process = ServiceProcess(STUB, {"CIVICPULSE_HTTP_PORT": str(pick_free_port())}, tmp_path / "l")
    process.start()
    try:
        process.wait_healthy(within_seconds=30)

        assert process.listens_on_its_port() is True
    finally:
        process.kill()


def test_another_process_answering_on_the_port_is_not_this_service_healthy(
    tmp_path: Path, foreign_service: int
) -> None:
    process = ServiceProcess(STUB, {"CIVICPULSE_HTTP_PORT": str(foreign_service)}, tmp_path / "l")
    process.start()
    try:
        with pytest.raises(TimeoutError, match="not healthy"):
            process.wait_healthy(within_seconds=3)

        assert process.listens_on_its_port() is False
    finally:
        process.kill()
