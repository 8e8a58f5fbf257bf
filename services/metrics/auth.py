"""Bearer tokens with a role: 401 when the token is missing or unknown, 403 when its role
may not see the resource."""

import secrets
from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.metrics.settings import ApiToken, Role
from shared.api_keys import hash_api_key

# Which roles may use which views: ops sees everything managers see.
GRANTS: Mapping[Role, frozenset[Role]] = {
    Role.MANAGER: frozenset({Role.MANAGER, Role.OPS}),
    Role.OPS: frozenset({Role.OPS}),
}

bearer = HTTPBearer(auto_error=False, description="An API token (role manager or ops).")


def role_checker(tokens: Mapping[str, ApiToken]) -> Callable[[Role], Callable[..., Role]]:
    roles_by_hash = {token.hash: token.role for token in tokens.values()}

    def requires(needed: Role) -> Callable[..., Role]:
        def check(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> Role:
            role = _role_of(credentials, roles_by_hash)
            if role is None:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    detail="missing or unknown bearer token (header Authorization: Bearer …)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if role not in GRANTS[needed]:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    detail=f"role {role.value} may not use this; it needs role {needed.value}",
                )
            return role

        return check

    return requires


def _role_of(
    credentials: HTTPAuthorizationCredentials | None, roles_by_hash: Mapping[str, Role]
) -> Role | None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        return None
    presented = hash_api_key(credentials.credentials)
    for known, role in roles_by_hash.items():
        if secrets.compare_digest(known, presented):
            return role
    return None


# The dashboard's browser session: the same API token, kept in an HttpOnly cookie
# that the sign-in form sets, so that a browser can follow links between pages.
SESSION_COOKIE = "civicpulse_metrics_token"


def token_roles(tokens: Mapping[str, ApiToken]) -> Callable[[str | None], Role | None]:
    """The role of a presented token (a bearer token or the session cookie), or None."""
    roles_by_hash = {token.hash: token.role for token in tokens.values()}

    def role_of(presented: str | None) -> Role | None:
        if not presented:
            return None
        return _role_of(
            HTTPAuthorizationCredentials(scheme="Bearer", credentials=presented), roles_by_hash
        )

    return role_of
