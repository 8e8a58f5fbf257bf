"""The dashboard's client for another CivicPulse service it reads (complaints, feedback).

Each page part that reads a peer (the worklist, survey comments) sends the
dashboard's own API key and gives up after `TIMEOUT_SECONDS`, so an unreachable
peer costs the page one short wait, and the page says so instead of failing.
"""

import httpx

from shared.api_keys import HEADER

TIMEOUT_SECONDS = 5.0


class PeerService:
    """A peer service's base URL and the dashboard's key on it."""

    def __init__(
        self, url: str, api_key: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._url = url.rstrip("/")
        self._api_key = api_key
        self._transport = transport

    def client(self) -> httpx.AsyncClient:
        """A client for one page's requests (use it as `async with`)."""
        return httpx.AsyncClient(
            base_url=self._url,
            headers={HEADER: self._api_key},
            timeout=TIMEOUT_SECONDS,
            transport=self._transport,
        )
