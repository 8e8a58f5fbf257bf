"""Answer links: signed with itsdangerous, carrying the request id and expiry."""

from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer

from services.feedback.links import (
    SALT,
    AlreadyAnsweredError,
    AnswerLinks,
    ExpiredLinkError,
    InvalidLinkError,
    LinkClaims,
    SurveyClosedError,
    UnknownSurveyError,
    check_request_open,
)

SECRET = "a-secret-of-at-least-thirty-two-characters"
NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)
EXPIRES = NOW + timedelta(days=14)
LINKS = AnswerLinks(SECRET)


def test_a_link_carries_its_request_id_and_expiry() -> None:
    token = LINKS.token("req-1", EXPIRES)

    assert LINKS.read(token, NOW) == LinkClaims("req-1", EXPIRES)


def test_an_expired_link_is_refused() -> None:
    token = LINKS.token("req-1", EXPIRES)

    with pytest.raises(ExpiredLinkError):
        LINKS.read(token, EXPIRES)


def test_a_tampered_link_is_refused() -> None:
    token = LINKS.token("req-1", EXPIRES)
    _, rest = token.split(".", 1)
    forged = LINKS.token("req-2", EXPIRES).split(".", 1)[0] + "." + rest

    with pytest.raises(InvalidLinkError):
        LINKS.read(forged, NOW)


def test_a_link_signed_with_another_secret_is_refused() -> None:
    token = AnswerLinks("another-secret-of-thirty-two-characters!").token("req-1", EXPIRES)

    with pytest.raises(InvalidLinkError):
        LINKS.read(token, NOW)


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c", "%%%"])
def test_a_malformed_link_is_refused(token: str) -> None:
    with pytest.raises(InvalidLinkError):
        LINKS.read(token, NOW)


def test_a_signed_value_that_is_not_an_answer_link_is_refused() -> None:
    token = URLSafeTimedSerializer(SECRET, salt=SALT).dumps(["req-1"])

    with pytest.raises(InvalidLinkError, match="not an answer link"):
        LINKS.read(token, NOW)


def test_a_link_whose_request_was_answered_cannot_be_used_again() -> None:
    with pytest.raises(AlreadyAnsweredError):
        check_request_open("answered", EXPIRES, NOW)


@pytest.mark.parametrize(
    ("status", "expires_at"),
    [("expired", EXPIRES), ("cancelled", None), ("requested", NOW)],
)
def test_a_link_whose_request_is_closed_is_refused(
    status: str, expires_at: datetime | None
) -> None:
    with pytest.raises(SurveyClosedError):
        check_request_open(status, expires_at, NOW)


def test_a_link_to_an_unknown_request_is_refused() -> None:
    with pytest.raises(UnknownSurveyError):
        check_request_open(None, None, NOW)


def test_a_link_to_an_open_request_can_be_used() -> None:
    check_request_open("requested", EXPIRES, NOW)
