"""Signed answer links: the request id and its expiry, signed with itsdangerous.

The signature makes a link unforgeable and untouchable; the expiry is checked
against the service's clock (so tests inject time); single use is enforced in
PostgreSQL, where the answer is recorded (see `store.record_answer`).

Links are signed with HMAC-SHA256 and the newest of a list of secrets; every
listed secret verifies, so a rotation (a new secret put first, the old one
kept until the links it signed have expired) breaks no live link.

Links issued before HMAC-SHA256 were signed with itsdangerous' default,
HMAC-SHA1. Residents hold them for up to `CIVICPULSE_FEEDBACK_EXPIRY_DAYS`
(at most 90), so they are still verified, with the same listed secrets,
until `accept_sha1` is turned off; none is issued any more. HMAC-SHA1 is not
broken as a MAC (its collisions do not help a forger), so accepting old links
for their remaining life is no weakness, while refusing them would strand
every resident holding one.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer

SALT = "civicpulse-feedback-answer-link"


class LinkError(Exception):
    """An answer link that cannot be used; `code` says why, for the API."""

    code = "invalid_link"
    message = "This link is not valid. Check that you copied the whole link from your message."


class InvalidLinkError(LinkError):
    pass


class ExpiredLinkError(LinkError):
    code = "expired"
    message = "This survey has closed, so we can no longer accept answers. Thank you anyway."


@dataclass(frozen=True, slots=True)
class LinkClaims:
    request_id: str
    expires_at: datetime
    sha1: bool = False
    """Signed by the HMAC-SHA1 scheme of links issued before the upgrade."""


def _serializer(secrets_newest_first: Sequence[str], digest: Any) -> URLSafeTimedSerializer:
    # itsdangerous signs with the LAST key of its list and verifies with any.
    return URLSafeTimedSerializer(
        list(reversed(secrets_newest_first)),
        salt=SALT,
        signer_kwargs={"digest_method": digest},
        fallback_signers=[],
    )


class AnswerLinks:
    def __init__(self, secrets: str | Sequence[str], *, accept_sha1: bool = True) -> None:
        """`secrets` newest first: the first signs, every one verifies."""
        listed = [secrets] if isinstance(secrets, str) else list(secrets)
        if not listed:
            raise ValueError("answer links need at least one secret")
        self._serializer = _serializer(listed, hashlib.sha256)
        self._sha1 = _serializer(listed, hashlib.sha1) if accept_sha1 else None

    def token(self, request_id: str, expires_at: datetime) -> str:
        return self._serializer.dumps({"r": request_id, "e": int(expires_at.timestamp())})

    def read(self, token: str, now: datetime) -> LinkClaims:
        """The claims of a genuine, unexpired token; raises `LinkError` otherwise."""
        sha1 = False
        try:
            data = self._serializer.loads(token)
        except BadData as error:
            if self._sha1 is None:
                raise InvalidLinkError(str(error)) from error
            try:
                data, sha1 = self._sha1.loads(token), True
            except BadData:
                raise InvalidLinkError(str(error)) from error
        if not (
            isinstance(data, dict)
            and isinstance(data.get("r"), str)
            and isinstance(data.get("e"), int)
        ):
            raise InvalidLinkError("signed, but not an answer link")
        claims = LinkClaims(data["r"], datetime.fromtimestamp(data["e"], UTC), sha1)
        if now >= claims.expires_at:
            raise ExpiredLinkError(f"expired at {claims.expires_at.isoformat()}")
        return claims


class UnknownSurveyError(LinkError):
    code = "not_found"
    message = "We could not find this survey. It may have been withdrawn."


class AlreadyAnsweredError(LinkError):
    code = "already_answered"
    message = "This survey has already been answered. Each link can be used once."


class SurveyClosedError(ExpiredLinkError):
    """Signed and unexpired, but the request is closed (expired early or never sent)."""


def check_request_open(status: str | None, expires_at: datetime | None, now: datetime) -> None:
    """Raise why a request behind a genuine link cannot take answers (None: no such request).

    A link is single use: once its request is answered, every later use is refused.
    """
    if status is None:
        raise UnknownSurveyError("no such request")
    if status == "answered":
        raise AlreadyAnsweredError("already answered")
    if status != "requested" or (expires_at is not None and expires_at <= now):
        raise SurveyClosedError(f"request is {status}")
