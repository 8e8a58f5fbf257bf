"""A stand-in service for `ServiceProcess` tests: answers `/healthz` on its port if it can
bind it, else stays up without listening (as a service whose bind failed, before it exits)."""

import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


if __name__ == "__main__":
    try:
        server = HTTPServer(("127.0.0.1", int(os.environ["CIVICPULSE_HTTP_PORT"])), Healthy)
    except OSError:
        time.sleep(60)
    else:
        server.serve_forever()
