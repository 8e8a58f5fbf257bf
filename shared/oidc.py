"""Sign-in for people: OIDC access tokens from the council's identity provider.

An access token's signature is checked against the provider's JWKS (fetched
and cached by PyJWT's `PyJWKClient`), then its issuer, audience, expiry and
not-before; its roles come from a configurable claim (Entra ID's `roles`),
mapped to the service's own roles. Each service that signs people in
(metrics, complaints) has its own `CIVICPULSE_<SERVICE>_OIDC_*` settings and
builds an `OidcConfig` from them; the checking lives here once.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import jwt
from fastapi import HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials

R = TypeVar("R")


class SignInRefusedError(Exception):
    """An access token that proves nothing: the reason goes in the 401."""


class NoRoleError(Exception):
    """A valid access token whose user holds none of the service's roles: 403."""


@dataclass(frozen=True)
class OidcConfig(Generic[R]):
    """One service's OIDC settings; `service` names its variables in errors."""

    service: str
    issuer: str
    audience: str
    jwks_url: str
    role_map: Mapping[str, R]
    roles_claim: str = "roles"
    algorithms: Sequence[str] = field(default=("RS256",))
    leeway_seconds: float = 60


class OidcVerifier(Generic[R]):
    def __init__(self, config: OidcConfig[R]) -> None:
        self._config = config
        # Keys are cached; an unknown key id refetches the set (provider key rollover).
        self._keys = jwt.PyJWKClient(config.jwks_url, cache_keys=True, lifespan=300, timeout=5)

    @classmethod
    def of(cls, config: OidcConfig[R]) -> "OidcVerifier[R] | None":
        """None when no issuer is set (static credentials only); a half-set config is an error."""
        if not config.issuer:
            return None
        if not config.audience or not config.jwks_url:
            prefix = f"CIVICPULSE_{config.service.upper()}_OIDC"
            raise ValueError(f"{prefix}_ISSUER needs {prefix}_AUDIENCE and {prefix}_JWKS_URL")
        return cls(config)

    def roles_of(self, token: str) -> frozenset[R]:
        """The service's roles an access token carries (never empty).

        Raises `SignInRefusedError` for a token that proves nothing, `NoRoleError`
        for a genuine one without any of the service's roles.
        """
        config = self._config
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(config.algorithms),
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError as error:
            raise SignInRefusedError(
                f"the identity provider's keys are unreachable: {error}"
            ) from error
        except (jwt.PyJWTError, jwt.PyJWKClientError) as error:
            raise SignInRefusedError(f"access token refused: {error}") from error
        values = claims.get(config.roles_claim, [])
        listed = [values] if isinstance(values, str) else values
        held = frozenset(
            config.role_map[v] for v in listed if isinstance(v, str) and v in config.role_map
        )
        if not held:
            raise NoRoleError(f"the token's {config.roles_claim!r} claim holds no CivicPulse role")
        return held


def looks_like_jwt(token: str) -> bool:
    """A bearer token shaped like a JWT (three parts, a JSON header): worth verifying."""
    return token.count(".") == 2 and token.startswith("eyJ")


def signed_in_roles(
    oidc: OidcVerifier[R], credentials: HTTPAuthorizationCredentials | None
) -> frozenset[R] | None:
    """The roles of a bearer access token, None if the credentials are not one.

    A token that is one but fails is a 401 with the reason; one without a role, 403.
    Blocking (a JWKS fetch): call it from a plain `def` dependency, which FastAPI
    runs in a thread.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        return None
    if not looks_like_jwt(credentials.credentials):
        return None
    try:
        return oidc.roles_of(credentials.credentials)
    except SignInRefusedError as error:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=str(error),
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from error
    except NoRoleError as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(error)) from error
