"""API keys for the systems that call CivicPulse over HTTP, one per source system.

Only the keys' SHA-256 hashes are configured (`{"crm": "sha256:…"}`): keys are
32 random bytes, so a plain hash is enough, as there is nothing to
brute-force that a slow password hash would protect.
"""

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import APIKeyHeader
from pydantic import AfterValidator

SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
KEY_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
HEADER = "X-API-Key"


def hash_api_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def check_key_hashes(keys: dict[str, str]) -> dict[str, str]:
    """A settings validator: source names are slugs and values are hashes, never keys."""
    for source, key_hash in keys.items():
        if not SOURCE_NAME.fullmatch(source):
            raise ValueError(f"source {source!r}: use a-z, 0-9, '_' or '-', at most 64")
        if not KEY_HASH.fullmatch(key_hash):
            raise ValueError(f"{source}: give the key's hash ('sha256:<64 hex>'), not the key")
    return keys


# The settings type of a service's API keys.
ApiKeyHashes = Annotated[dict[str, str], AfterValidator(check_key_hashes)]


def new_api_key(source: str, setting: str) -> str:
    """A fresh key for `source`, as the lines a `new-api-key` command prints."""
    key = secrets.token_urlsafe(32)
    entry = f'{{"{source}": "{hash_api_key(key)}"}}'
    return (
        f"API key for {source} (give it to that system; it is not stored): {key}\n"
        f"add to {setting}: {entry}"
    )


def authenticated_source(keys: Mapping[str, str]) -> Callable[..., str]:
    """A FastAPI dependency giving the calling system's name, or 401."""
    sources_by_hash = {key_hash: source for source, key_hash in keys.items()}
    header = APIKeyHeader(name=HEADER, auto_error=False, description="The source system's API key.")

    def source_of_caller(key: Annotated[str | None, Depends(header)]) -> str:
        source = sources_by_hash.get(hash_api_key(key)) if key else None
        if source is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail=f"missing or unknown API key (header {HEADER})",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        return source

    return source_of_caller
