"""An identity provider on loopback for the OIDC tests: a key pair, its JWKS served over
HTTP, and access tokens signed with it (or with a forger's key)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://login.example.test/tenant-1/v2.0"
AUDIENCE = "api://civicpulse-metrics"  # the default audience of `access_token`
KEY_ID = "key-1"
PROVIDER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
FORGER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class JwksServer:
    """The provider's JWKS endpoint on loopback; counts fetches to show caching."""

    def __init__(self) -> None:
        jwk = json.loads(RSAAlgorithm.to_jwk(PROVIDER_KEY.public_key()))
        body = json.dumps({"keys": [jwk | {"kid": KEY_ID, "use": "sig", "alg": "RS256"}]})
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/keys"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def access_token(key: rsa.RSAPrivateKey = PROVIDER_KEY, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "officer-1",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "roles": ["CivicPulse.Manager"],
    }
    claims |= overrides
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KEY_ID})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
