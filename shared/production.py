"""Production mode: the checks a service makes before it starts.

With `CIVICPULSE_ENVIRONMENT=production` a service refuses to start while any
setting is unsafe, and lists every problem at once so one deployment round
fixes them all (docs/production.md, "Production mode").
"""

import hashlib
import math
import sys
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from shared.settings import ServiceSettings

# Secrets published in .env.example and as development defaults: anyone can
# read them, so they authenticate nobody. A unit test keeps this list in step
# with .env.example.
DEMO_KEYS = ("demo-crm-key-change-me", "demo-dashboard-key-change-me")
DEMO_SECRETS = (
    "demo-postgres-password-change-me",
    "demo-grafana-password-change-me",
    "demo-token-secret-change-me-0123456789abcdef",
    "civicpulse-dev-only-feedback-secret",
    *DEMO_KEYS,
)
DEMO_HASHES = tuple(f"sha256:{hashlib.sha256(key.encode()).hexdigest()}" for key in DEMO_KEYS)

# A secret's estimated entropy (length times the Shannon entropy of its
# characters) must reach this. The estimate of a random 32-character secret
# varies (about 130 to 160 bits), so the floor sits below it; the secret
# `new-token-secret` prints estimates at about 330.
MINIMUM_SECRET_BITS = 100


def env_name(field: str) -> str:
    return f"CIVICPULSE_{field.upper()}"


def estimated_bits(secret: str) -> float:
    """Length times the Shannon entropy per character: a cheap upper estimate.

    It cannot tell a random string from a clever passphrase, but it does catch
    few-character secrets that pass a length rule ("aaaa…", "abab…"). A
    secret that is one shorter string repeated counts as that string alone.
    """
    if not secret:
        return 0.0
    period = (secret + secret).find(secret, 1)
    if period < len(secret):
        secret = secret[:period]
    counts = Counter(secret)
    per_char = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return max(0.0, per_char * len(secret))


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a settings value, secrets revealed."""
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, str):
        yield value
    elif isinstance(value, BaseModel):
        for item in value.__dict__.values():
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


def demo_value_problems(settings: "ServiceSettings") -> list[str]:
    problems = []
    for field in type(settings).model_fields:
        strings = list(_strings(getattr(settings, field)))
        if any(s in DEMO_HASHES for s in strings):
            problems.append(
                f"{env_name(field)} holds the hash of a demo key published in .env.example: "
                "make a new key with the service's new-api-key (or new-api-token) command"
            )
        elif any(demo in s for s in strings for demo in DEMO_SECRETS):
            problems.append(
                f"{env_name(field)} holds a demo secret published in .env.example or as the "
                "development default: replace it with a random one"
            )
    return problems


def http_url_problems(settings: "ServiceSettings") -> list[str]:
    return [
        f"{env_name(field)} is an http URL ({value}): use https so links and tokens are "
        "not sent in clear"
        for field in type(settings).model_fields
        if field.endswith("_url")
        and isinstance(value := getattr(settings, field), str)
        and urlsplit(value).scheme == "http"
    ]


def kafka_problems(settings: "ServiceSettings") -> list[str]:
    if settings.kafka_security_protocol == "PLAINTEXT":
        return [
            "CIVICPULSE_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: use SASL_SSL (or SSL with a "
            "client certificate) so records are encrypted and clients authenticated"
        ]
    problems = []
    if settings.kafka_security_protocol == "SASL_SSL":
        has_password = settings.kafka_sasl_password or settings.kafka_sasl_password_file
        if not settings.kafka_sasl_username or not has_password:
            problems.append(
                "CIVICPULSE_KAFKA_SECURITY_PROTOCOL is SASL_SSL but CIVICPULSE_KAFKA_SASL_USERNAME "
                "or its password (CIVICPULSE_KAFKA_SASL_PASSWORD or _PASSWORD_FILE) is missing"
            )
    password_file = settings.kafka_sasl_password_file
    if password_file is not None and not password_file.is_file():
        problems.append(
            f"CIVICPULSE_KAFKA_SASL_PASSWORD_FILE {password_file} is not a readable file"
        )
    if (settings.kafka_ssl_cert_file is None) != (settings.kafka_ssl_key_file is None):
        problems.append(
            "give both CIVICPULSE_KAFKA_SSL_CERT_FILE and CIVICPULSE_KAFKA_SSL_KEY_FILE, or neither"
        )
    return problems


def database_problems(settings: "ServiceSettings") -> list[str]:
    urls = {"database_url": settings.database_url}
    if settings.migration_database_url:
        urls["migration_database_url"] = settings.migration_database_url
    return [
        f"{env_name(field)} lacks sslmode=verify-full: add "
        "?sslmode=verify-full&sslrootcert=/path/to/ca.crt so the connection is encrypted "
        "and the server's certificate and name are checked"
        for field, url in urls.items()
        if parse_qs(urlsplit(url).query).get("sslmode") != ["verify-full"]
    ]


def secret_strength_problems(field: str, secret: str, *, which: str = "") -> list[str]:
    """`which` tells apart the secrets of a list setting, e.g. " (secret 2 of 3)"."""
    name = env_name(field) + which
    if len(secret) < 32:
        return [f"{name} is shorter than 32 characters"]
    bits = estimated_bits(secret)
    if bits < MINIMUM_SECRET_BITS:
        return [
            f"{name} has low entropy (about {bits:.0f} bits, at least "
            f"{MINIMUM_SECRET_BITS} needed): make one with "
            "`python -m services.feedback new-token-secret`"
        ]
    return []


def callback_token_problems(field: str, token: SecretStr | None, *, required: bool) -> list[str]:
    """A bearer token an outside service (GOV.UK Notify) calls us with.

    Required where its sender runs, since without it delivery receipts are
    refused; when set, as strong as any other secret (demo values are caught
    by `demo_value_problems` with every field).
    """
    if token is None:
        if not required:
            return []
        return [
            f"{env_name(field)} is not set: GOV.UK Notify's delivery-status callbacks would be "
            "refused, so permanent failures would never mark a contact route bad"
        ]
    return secret_strength_problems(field, token.get_secret_value())


def metrics_port_problems(settings: "ServiceSettings") -> list[str]:
    if settings.metrics_port is None:
        return [
            "CIVICPULSE_METRICS_PORT is not set: /metrics (per-area KPIs, breach counts) "
            "would be served without authentication on the API port"
        ]
    if settings.metrics_port == settings.http_port:
        return ["CIVICPULSE_METRICS_PORT must differ from CIVICPULSE_HTTP_PORT"]
    return []


def common_problems(settings: "ServiceSettings") -> list[str]:
    return [
        *demo_value_problems(settings),
        *metrics_port_problems(settings),
        *http_url_problems(settings),
        *kafka_problems(settings),
        *database_problems(settings),
    ]


class UnsafeForProduction(SystemExit):
    """Exit status 2, after the problems are printed."""


def exit_if_unsafe(
    settings: "ServiceSettings", service: str, problems: list[str] | None = None
) -> None:
    """In production, print every problem with the settings and exit non-zero."""
    if settings.environment != "production":
        return
    found = settings.production_problems() if problems is None else problems
    if not found:
        return
    lines = "\n".join(f"  - {problem}" for problem in found)
    print(
        f"{service}: refusing to start with CIVICPULSE_ENVIRONMENT=production; "
        f"{len(found)} problem(s):\n{lines}",
        file=sys.stderr,
    )
    raise UnsafeForProduction(2)
