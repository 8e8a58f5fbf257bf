"""Guards for pages the public reaches: security headers, and a rate limit per address.

Both are small ASGI middlewares applied to chosen path prefixes, so a service
puts them on its public pages only (feedback's `/surveys/...`) and leaves
other HTML, such as the metrics dashboard with its own scripts, untouched.

The rate limit counts with the `limits` library (the one slowapi builds on),
a moving window in this process's memory: each replica counts on its own, so
N replicas let an address through up to N times the limit (docs/production.md).
The address is the ASGI client, which uvicorn takes from `X-Forwarded-For`
only when the connection comes from a trusted proxy
(`CIVICPULSE_HTTP_FORWARDED_ALLOW_IPS`).
"""

import ipaddress
import math
import time
from collections.abc import Callable, Mapping, Sequence

from fastapi import FastAPI
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Refused requests: the scope (to choose HTML or JSON) and the seconds to wait.
RefusedResponse = Callable[[Scope, int], Response]


class SecurityHeaders:
    """ASGI middleware: set `headers` on every response under `paths`, whatever made it
    (a route, a 413 or a 429 from another middleware, a 404)."""

    def __init__(self, app: ASGIApp, *, paths: Sequence[str], headers: Mapping[str, str]) -> None:
        self.app = app
        self.paths = tuple(paths)
        self.headers = dict(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.paths):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def client_key(scope: Scope) -> str:
    """Whom a request counts against: its IPv4 address, or its IPv6 /64.

    One IPv6 subscriber is usually given a whole /64, so counting single IPv6
    addresses would let one household take 2^64 turns.
    """
    client = scope.get("client")
    host = client[0] if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def parse_rate_limit(text: str) -> list[RateLimitItem]:
    """`20/minute`, or several separated by `;` (`20/minute;200/hour`); ValueError if not."""
    items = parse_many(text)
    if not items:
        raise ValueError(f"not a rate limit: {text!r}")
    return items


class RateLimit:
    """ASGI middleware: requests under `paths` beyond `limits` per client get `refused`
    with `Retry-After` (seconds until the oldest counted request leaves the window)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: Sequence[str],
        limits: Sequence[RateLimitItem],
        refused: RefusedResponse,
    ) -> None:
        self.app = app
        self.paths = tuple(paths)
        self.limits = list(limits)
        self.refused = refused
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, key: str) -> int | None:
        """Seconds to wait if `key` is over a limit now, else None (and the request counts).

        Only admitted requests count, so a client that keeps knocking while refused
        is let in again as soon as its window has room.
        """
        full = [item for item in self.limits if not self.limiter.test(item, key)]
        if not full:
            for item in self.limits:
                self.limiter.hit(item, key)
            return None
        now = time.time()
        resets = [self.limiter.get_window_stats(item, key).reset_time for item in full]
        return max(1, math.ceil(max(resets) - now))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.paths):
            await self.app(scope, receive, send)
            return
        wait = self.retry_after(client_key(scope))
        if wait is None:
            await self.app(scope, receive, send)
            return
        response = self.refused(scope, wait)
        response.headers["Retry-After"] = str(wait)
        await response(scope, receive, send)


def guard_pages(
    app: FastAPI,
    *,
    paths: Sequence[str],
    headers: Mapping[str, str],
    rate_limit: Sequence[RateLimitItem],
    refused: RefusedResponse,
) -> None:
    """Rate-limit `paths` and give their responses `headers`.

    Added last, so they run first: the headers reach every response, 429s and
    413s included, and a refused request is not read or routed at all.
    """
    app.add_middleware(RateLimit, paths=paths, limits=rate_limit, refused=refused)
    app.add_middleware(SecurityHeaders, paths=paths, headers=headers)
