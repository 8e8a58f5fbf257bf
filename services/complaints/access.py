"""Who may call the complaints API, and what they may do.

- Read-write API keys (CIVICPULSE_COMPLAINTS_API_KEYS): case-management
  systems; they read and post case actions, and an action's `source` is the
  key's system.
- Read-only API keys (CIVICPULSE_COMPLAINTS_READ_API_KEYS): the metrics
  dashboard and other readers; 403 on every write.
- OIDC access tokens (CIVICPULSE_COMPLAINTS_OIDC_*): officers signed in with
  the council's identity provider, to read the worklist and complaints;
  checked by `shared.oidc`.

Missing or unknown credentials are 401; known ones without the right are 403.
"""

import secrets
from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.complaints.settings import ComplaintsSettings, Role
from shared.api_keys import HEADER, hash_api_key
from shared.oidc import OidcConfig, OidcVerifier, signed_in_roles

api_key = APIKeyHeader(
    name=HEADER, auto_error=False, description="A case-management system's or reader's API key."
)
bearer = HTTPBearer(auto_error=False, description="An officer's OIDC access token (reads only).")


def complaints_oidc(settings: ComplaintsSettings) -> OidcVerifier[Role] | None:
    """The verifier of people's access tokens, if CIVICPULSE_COMPLAINTS_OIDC_ISSUER is set."""
    return OidcVerifier.of(
        OidcConfig(
            service="complaints",
            issuer=settings.complaints_oidc_issuer,
            audience=settings.complaints_oidc_audience,
            jwks_url=settings.complaints_oidc_jwks_url,
            roles_claim=settings.complaints_oidc_roles_claim,
            role_map=settings.complaints_oidc_role_map,
            algorithms=settings.complaints_oidc_algorithms,
            leeway_seconds=settings.complaints_oidc_leeway_seconds,
        )
    )


def _source_of(key: str | None, keys: Mapping[str, str]) -> str | None:
    if not key:
        return None
    presented = hash_api_key(key)
    found = None
    for source, known in keys.items():
        if secrets.compare_digest(known, presented):
            found = source
    return found


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "ApiKey"}
    )


class Access:
    """The API's two FastAPI dependencies: `writer` (read-write keys) and `reader`."""

    def __init__(self, settings: ComplaintsSettings) -> None:
        self._writers = dict(settings.complaints_api_keys)
        self._readers = dict(settings.complaints_read_api_keys)
        self._oidc = complaints_oidc(settings)
        self.writer = self._writer_dependency()
        self.reader = self._reader_dependency()

    def _writer_dependency(self) -> Callable[..., str]:
        def writer(key: Annotated[str | None, Depends(api_key)]) -> str:
            """The calling system, whose key may post case actions."""
            source = _source_of(key, self._writers)
            if source is not None:
                return source
            reader = _source_of(key, self._readers)
            if reader is not None:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    detail=f"the API key of {reader!r} is read-only: it may read complaints "
                    "and the worklist, not change them",
                )
            raise _unauthorised(f"missing or unknown API key (header {HEADER})")

        return writer

    def _reader_dependency(self) -> Callable[..., str]:
        # A plain function: FastAPI runs it in a thread, so a JWKS fetch blocks no request.
        def reader(
            key: Annotated[str | None, Depends(api_key)],
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> str:
            """Who is reading: a system's name, or `signed-in officer`."""
            source = _source_of(key, self._writers) or _source_of(key, self._readers)
            if source is not None:
                return source
            # Roles, not None, mean a complaints role (a token without one is a 403
            # already), and every complaints role may read.
            if self._oidc is not None and signed_in_roles(self._oidc, credentials) is not None:
                return "signed-in officer"
            raise _unauthorised(
                f"missing or unknown API key (header {HEADER}) or access token "
                "(header Authorization: Bearer …)"
            )

        return reader
