"""A stand-in for GOV.UK Notify's API on a loopback port, for the official client.

It speaks the part of Notify's v2 API the sender uses (`POST
/v2/notifications/email` and `/sms`), keeps a ledger of every request it was
sent and what it answered, and can answer with an error status or hold a call
until the test lets it go (a slow Notify, for races).
"""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SERVICE_ID = "26785a09-ab16-4eb0-8407-a37497a57506"
# Notify keys are `<name>-<service id>-<secret>`; this one opens nothing.
API_KEY = f"test-{SERVICE_ID}-3d844edf-8d35-48ac-975b-e847b4f122b0"


@dataclass
class FakeNotify:
    """Records calls and answers with a status.

    `statuses`, if set, is the status of each next call in turn, then `status`.
    A reference in `held` makes its call wait until `release(reference)`.
    """

    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 201
    statuses: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0  # a slow Notify: each call takes this long
    # Slower still for some recipients (address to seconds), for races.
    slow_for: dict[str, float] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)  # references being answered now
    held: dict[str, threading.Event] = field(default_factory=dict)
    entered: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hold(self, reference: str) -> None:
        self.held[reference] = threading.Event()
        self.entered[reference] = threading.Event()

    def release(self, reference: str) -> None:
        self.held[reference].set()

    def record(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        reference = str(body.get("reference"))
        recipient = str(body.get("email_address") or body.get("phone_number"))
        self.in_flight.add(reference)
        try:
            if reference in self.held:
                self.entered[reference].set()
                self.held[reference].wait(timeout=60)
            time.sleep(self.slow_for.get(recipient, self.delay_seconds))
        finally:
            self.in_flight.discard(reference)
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else self.status
            self.requests.append({"path": path, **body, "answered": status})
            number = len(self.requests)
        if status >= 400:
            return status, {"errors": [{"message": "refused"}], "status_code": status}
        return status, {"id": f"notify-{number}", "reference": body.get("reference")}

    @property
    def references(self) -> list[str]:
        return [request["reference"] for request in self.requests]

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """The requests Notify accepted (201): what was really sent."""
        return [request for request in self.requests if request["answered"] < 400]


@contextmanager
def serving_fake_notify() -> Iterator[tuple[FakeNotify, str]]:
    """The fake on a loopback port, and its base URL."""
    fake = FakeNotify()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                status, answer = 401, {"errors": [{"error": "AuthError"}], "status_code": 401}
            else:
                status, answer = fake.record(self.path, body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            for name, value in fake.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        for gate in fake.held.values():
            gate.set()
        server.shutdown()
        server.server_close()
