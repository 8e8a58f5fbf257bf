"""Alertmanager for `civicpulse dev` and the tests, with a local webhook receiver.

The routing tree and inhibition rules are deploy/alertmanager/alertmanager.yml's;
only the receivers change: every one of them posts to a local webhook that logs
what would have been sent (by email or to Teams), tagged with the receiver's name.
"""

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from civicpulse import infra
from civicpulse.processes import REPO_ROOT

ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


class WebhookReceiver:
    """Alertmanager's webhook payloads, kept in memory and appended to a log (JSON lines).

    `POST /<receiver>` records a notification; `GET /` answers 200 with the count.
    """

    def __init__(self, log_path: Path, *, port: int = 0) -> None:
        self.log_path = log_path
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    payload = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.record(self.path.strip("/"), payload)
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:
                body = json.dumps({"notifications": len(receiver.received)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the log file is the record

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, receiver: str, payload: dict[str, Any]) -> None:
        entry = {"receiver": receiver, **payload}
        with self._lock:
            self.received.append(entry)
            with self.log_path.open("a") as log:
                log.write(json.dumps(entry) + "\n")

    def start(self) -> "WebhookReceiver":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def render_alertmanager_config(target: Path, webhook_url: str, *, group_wait: str = "10s") -> Path:
    """The deployed routing and inhibitions, every receiver posting to `webhook_url`."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config.pop("global", None)  # SMTP settings: nothing is emailed locally
    config["route"]["group_wait"] = group_wait
    config["receivers"] = [
        {
            "name": receiver["name"],
            "webhook_configs": [
                {"url": f"{webhook_url}/{receiver['name']}", "send_resolved": True}
            ],
        }
        for receiver in config["receivers"]
    ]
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def start_alertmanager(
    run_dir: Path, webhook_url: str, *, group_wait: str = "10s"
) -> tuple[subprocess.Popen[bytes], str]:
    """Run Debian's Alertmanager on the rendered config; returns it and its URL."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        raise infra.InfraError(
            "alertmanager is not installed (Debian package 'prometheus-alertmanager')"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    port = infra.pick_free_port(9093)
    config = render_alertmanager_config(
        run_dir / "alertmanager.yml", webhook_url, group_wait=group_wait
    )
    log = (run_dir / "alertmanager.log").open("ab")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={run_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # one instance: no gossip port to collide on
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, f"http://127.0.0.1:{port}"
