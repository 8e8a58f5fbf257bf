"""Bearer tokens with a role: 401 when the token is missing, unknown or invalid, 403 when
its role may not see the resource.

Two kinds of bearer token are accepted: static tokens for machine clients
(configured as hashes), and OIDC access tokens for people signed in with the
council's identity provider (Entra ID and the like), checked by
`shared.oidc` against CIVICPULSE_METRICS_OIDC_*.
"""

import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.metrics.settings import ApiToken, MetricsSettings, Role
from shared.api_keys import hash_api_key
from shared.oidc import OidcConfig, OidcVerifier, signed_in_roles


def metrics_oidc(settings: MetricsSettings) -> OidcVerifier[Role] | None:
    """The verifier of people's access tokens, if CIVICPULSE_METRICS_OIDC_ISSUER is set."""
    return OidcVerifier.of(
        OidcConfig(
            service="metrics",
            issuer=settings.metrics_oidc_issuer,
            audience=settings.metrics_oidc_audience,
            jwks_url=settings.metrics_oidc_jwks_url,
            roles_claim=settings.metrics_oidc_roles_claim,
            role_map=settings.metrics_oidc_role_map,
            algorithms=settings.metrics_oidc_algorithms,
            leeway_seconds=settings.metrics_oidc_leeway_seconds,
        )
    )


def strongest(roles: frozenset[Role]) -> Role:
    """Ops sees everything a manager sees, so it wins when both are held."""
    return Role.OPS if Role.OPS in roles else Role.MANAGER


# Which roles may use which views: ops sees everything managers see.
GRANTS: Mapping[Role, frozenset[Role]] = {
    Role.MANAGER: frozenset({Role.MANAGER, Role.OPS}),
    Role.OPS: frozenset({Role.OPS}),
}

bearer = HTTPBearer(auto_error=False, description="An API token (role manager or ops).")


def role_checker(
    tokens: Mapping[str, ApiToken], oidc: OidcVerifier[Role] | None = None
) -> Callable[[Role], Callable[..., Awaitable[Role]]]:
    roles_by_hash = {token.hash: token.role for token in tokens.values()}

    def requires(needed: Role) -> Callable[..., Awaitable[Role]]:
        # On the event loop: a static token is one SHA-256 and a few compares, cheaper
        # than the hop to a worker thread that a plain function costs on every request.
        # Only an access token goes to a thread, where a JWKS fetch blocks no request.
        async def check(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> Role:
            role = _role_of(credentials, roles_by_hash)
            if role is None and oidc is not None:
                signed_in = await run_in_threadpool(signed_in_roles, oidc, credentials)
                role = None if signed_in is None else strongest(signed_in)
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
