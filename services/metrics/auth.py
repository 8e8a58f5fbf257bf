"""Bearer tokens with a role: 401 when the token is missing, unknown or invalid, 403 when
its role may not see the resource.

Two kinds of bearer token are accepted: static tokens for machine clients
(configured as hashes), and OIDC access tokens for people signed in with the
council's identity provider (Entra ID and the like). An access token's
signature is checked against the provider's JWKS (fetched and cached by
PyJWT's `PyJWKClient`), then its issuer, audience, expiry and not-before; its
roles come from a configurable claim.
"""

import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.metrics.settings import ApiToken, MetricsSettings, Role
from shared.api_keys import hash_api_key


class SignInRefusedError(Exception):
    """An access token that proves nothing: the reason goes in the 401."""


class NoRoleError(Exception):
    """A valid access token whose user holds no CivicPulse role: 403."""


class OidcVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        roles_claim: str = "roles",
        role_map: Mapping[str, Role],
        algorithms: Sequence[str] = ("RS256",),
        leeway_seconds: float = 60,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._roles_claim = roles_claim
        self._role_map = dict(role_map)
        self._algorithms = list(algorithms)
        self._leeway = leeway_seconds
        # Keys are cached; an unknown key id refetches the set (provider key rollover).
        self._keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)

    @classmethod
    def of(cls, settings: MetricsSettings) -> "OidcVerifier | None":
        if not settings.metrics_oidc_issuer:
            return None
        if not settings.metrics_oidc_audience or not settings.metrics_oidc_jwks_url:
            raise ValueError(
                "CIVICPULSE_METRICS_OIDC_ISSUER needs CIVICPULSE_METRICS_OIDC_AUDIENCE and "
                "CIVICPULSE_METRICS_OIDC_JWKS_URL"
            )
        return cls(
            issuer=settings.metrics_oidc_issuer,
            audience=settings.metrics_oidc_audience,
            jwks_url=settings.metrics_oidc_jwks_url,
            roles_claim=settings.metrics_oidc_roles_claim,
            role_map=settings.metrics_oidc_role_map,
            algorithms=settings.metrics_oidc_algorithms,
            leeway_seconds=settings.metrics_oidc_leeway_seconds,
        )

    def role_of(self, token: str) -> Role:
        """The role an access token carries; `SignInRefusedError` or `NoRoleError` otherwise."""
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError as error:
            raise SignInRefusedError(
                f"the identity provider's keys are unreachable: {error}"
            ) from error
        except (jwt.PyJWTError, jwt.PyJWKClientError) as error:
            raise SignInRefusedError(f"access token refused: {error}") from error
        values = claims.get(self._roles_claim, [])
        held = {self._role_map.get(v) for v in ([values] if isinstance(values, str) else values)}
        # Ops sees everything a manager sees, so it wins when both are held.
        for role in (Role.OPS, Role.MANAGER):
            if role in held:
                return role
        raise NoRoleError(f"the token's {self._roles_claim!r} claim holds no CivicPulse role")


# Which roles may use which views: ops sees everything managers see.
GRANTS: Mapping[Role, frozenset[Role]] = {
    Role.MANAGER: frozenset({Role.MANAGER, Role.OPS}),
    Role.OPS: frozenset({Role.OPS}),
}

bearer = HTTPBearer(auto_error=False, description="An API token (role manager or ops).")


def role_checker(
    tokens: Mapping[str, ApiToken], oidc: OidcVerifier | None = None
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
            if role is None and oidc is not None and credentials is not None:
                role = await run_in_threadpool(_signed_in_role, oidc, credentials)
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


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def _signed_in_role(oidc: OidcVerifier, credentials: HTTPAuthorizationCredentials) -> Role | None:
    if credentials.scheme.lower() != "bearer" or not _looks_like_jwt(credentials.credentials):
        return None
    try:
        return oidc.role_of(credentials.credentials)
    except SignInRefusedError as error:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=str(error),
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from error
    except NoRoleError as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(error)) from error


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
