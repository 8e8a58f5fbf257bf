"""Signed answer links: the request id and its expiry, signed with itsdangerous.

The signature makes a link unforgeable and untouchable; the expiry is checked
against the service's clock (so tests inject time); single use is enforced in
PostgreSQL, where the answer is recorded (see `store.record_answer`).
"""

from dataclasses import dataclass
from datetime import UTC, datetime

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


class AnswerLinks:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=SALT)

    def token(self, request_id: str, expires_at: datetime) -> str:
        return self._serializer.dumps({"r": request_id, "e": int(expires_at.timestamp())})

    def read(self, token: str, now: datetime) -> LinkClaims:
        """The claims of a genuine, unexpired token; raises `LinkError` otherwise."""
        try:
            data = self._serializer.loads(token)
        except BadData as error:
            raise InvalidLinkError(str(error)) from error
        if not (
            isinstance(data, dict)
            and isinstance(data.get("r"), str)
            and isinstance(data.get("e"), int)
        ):
            raise InvalidLinkError("signed, but not an answer link")
        claims = LinkClaims(data["r"], datetime.fromtimestamp(data["e"], UTC))
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
