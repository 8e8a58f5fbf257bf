"""Answer links: signed with itsdangerous, carrying the request id and expiry.

Issue 12, "The residents' pages": answer links signed with HMAC-SHA256 and a
list of secrets, newest first, so a rotation keeps live links valid until
they expire.
"""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import BadSignature, URLSafeTimedSerializer

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
    sha256 = {"digest_method": hashlib.sha256}
    token = URLSafeTimedSerializer(SECRET, salt=SALT, signer_kwargs=sha256).dumps(["req-1"])

    with pytest.raises(InvalidLinkError, match="not an answer link"):
        LINKS.read(token, NOW)


OLD_SECRET = "the-secret-before-the-rotation-0123456789"
NEW_SECRET = "the-secret-after-the-rotation-9876543210"


def legacy_sha1_token(secret: str, request_id: str) -> str:
    """A link as the service signed them before HMAC-SHA256: itsdangerous' default."""
    serializer = URLSafeTimedSerializer(secret, salt=SALT)
    return serializer.dumps({"r": request_id, "e": int(EXPIRES.timestamp())})


def test_after_a_rotation_a_link_signed_with_the_old_secret_still_opens() -> None:
    before = AnswerLinks([OLD_SECRET]).token("req-1", EXPIRES)
    rotated = AnswerLinks([NEW_SECRET, OLD_SECRET])

    assert rotated.read(before, NOW) == LinkClaims("req-1", EXPIRES)


def test_new_links_are_signed_with_the_newest_secret_the_first_listed() -> None:
    token = AnswerLinks([NEW_SECRET, OLD_SECRET]).token("req-1", EXPIRES)

    assert AnswerLinks([NEW_SECRET]).read(token, NOW).request_id == "req-1"
    with pytest.raises(InvalidLinkError):
        AnswerLinks([OLD_SECRET]).read(token, NOW)


def test_a_link_signed_with_a_removed_secret_is_refused() -> None:
    before = AnswerLinks([OLD_SECRET]).token("req-1", EXPIRES)

    with pytest.raises(InvalidLinkError):
        AnswerLinks([NEW_SECRET]).read(before, NOW)


def test_a_tampered_link_is_refused_by_every_listed_secret() -> None:
    links = AnswerLinks([NEW_SECRET, OLD_SECRET])
    for signer in (AnswerLinks([NEW_SECRET]), AnswerLinks([OLD_SECRET])):
        token = signer.token("req-1", EXPIRES)
        _payload, rest = token.split(".", 1)
        forged = signer.token("req-2", EXPIRES).split(".", 1)[0] + "." + rest
        # A character inside the signature (the last one's low bits are base64 padding).
        flipped = token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:]

        for bad in (forged, flipped):
            with pytest.raises(InvalidLinkError):
                links.read(bad, NOW)


def test_links_are_signed_with_hmac_sha256() -> None:
    """The signature is 32 bytes (SHA-256), and SHA-256 with the same key verifies it."""
    token = LINKS.token("req-1", EXPIRES)
    sha256 = URLSafeTimedSerializer(
        SECRET, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
    )

    assert sha256.loads(token) == {"r": "req-1", "e": int(EXPIRES.timestamp())}
    signature = token.rsplit(".", 1)[1]
    assert len(signature) == 43  # 32 bytes in unpadded base64; SHA-1's 20 bytes are 27


def test_a_sha1_link_from_before_the_upgrade_opens_until_it_expires() -> None:
    """Decided: links already in residents' hands keep working for their remaining life."""
    legacy = legacy_sha1_token(OLD_SECRET, "req-1")
    links = AnswerLinks([NEW_SECRET, OLD_SECRET])

    assert links.read(legacy, NOW) == LinkClaims("req-1", EXPIRES, sha1=True)
    with pytest.raises(ExpiredLinkError):
        links.read(legacy, EXPIRES)
    with pytest.raises(InvalidLinkError):
        AnswerLinks([NEW_SECRET]).read(legacy, NOW)  # only with a listed secret


def test_sha1_links_are_refused_once_acceptance_is_turned_off() -> None:
    legacy = legacy_sha1_token(SECRET, "req-1")

    with pytest.raises(InvalidLinkError):
        AnswerLinks([SECRET], accept_sha1=False).read(legacy, NOW)


def test_no_new_link_is_signed_with_sha1() -> None:
    token = AnswerLinks([SECRET]).token("req-1", EXPIRES)

    with pytest.raises(BadSignature):
        URLSafeTimedSerializer(SECRET, salt=SALT).loads(token)


def test_answer_links_need_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        AnswerLinks([])


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
