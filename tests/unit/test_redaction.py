"""Personal details removed from residents' and officers' free text (issue 12, item 7).

DOMAIN.md, "Vocabulary": names, addresses, emails and phone numbers never
travel on the event topics; comments and reasons are cleaned where they are kept.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.redaction import REDACTED, redact


@pytest.mark.parametrize(
    "postcode",
    ["SW1A 1AA", "M1 1AE", "sw1a 1aa", "SW1A1AA", "m11ae", "B33 8TH", "CR2 6XH", "DN55 1PT"],
)
def test_uk_postcodes_in_every_format_are_removed(postcode: str) -> None:
    cleaned = redact(f"The bins outside {postcode} were not emptied")
    assert postcode not in cleaned
    assert cleaned.startswith("The bins outside ")
    assert cleaned.endswith(" were not emptied")


@pytest.mark.parametrize(
    "number", ["QQ 12 34 56 C", "QQ123456C", "qq 12 34 56 c", "AB 12 34 56 C", "JG103759A"]
)
def test_national_insurance_numbers_with_and_without_spaces_are_removed(number: str) -> None:
    assert redact(f"My NI number is {number}, please check") == (
        f"My NI number is {REDACTED}, please check"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I live at 12 Acacia Avenue and nobody came", f"I live at {REDACTED} and nobody came"),
        ("Flat 3, 4 High Street has no heating", f"{REDACTED} has no heating"),
        ("Fly-tipping behind 221b Baker St again", f"Fly-tipping behind {REDACTED} again"),
        (
            "Send it to 7 Mill Lane, Leeds LS1 4AP",
            f"Send it to {REDACTED}, Leeds *******",
        ),
    ],
)
def test_street_addresses_are_removed(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The Route 66 bus was 2 days late",
        "Bin 2 was missed on 12 March",
        "I waited 45 minutes and 3 transfers before anyone helped",
        "Council Tax went up 5% in 2026",
        "Room 101 at the one stop shop was closed",
    ],
)
def test_ordinary_words_and_numbers_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_emails_and_phone_numbers_are_still_removed() -> None:
    assert redact("Ring 07700 900123 or jo@example.org") == f"Ring {REDACTED} or {REDACTED}"


def test_a_find_shorter_than_the_marker_is_masked_to_its_own_length() -> None:
    assert redact("postcode m11ae") == "postcode *****"


@given(
    st.lists(
        st.sampled_from(
            ["a@b.co", "M1 1AE", "m11ae", "QQ123456C", "Flat 3, 4 High St", "ok", "2 days", "x"]
        ),
        max_size=200,
    )
)
def test_redaction_never_lengthens_text(parts: list[str]) -> None:
    """Issue 9, item 4: a text within its field limit still fits after redaction."""
    text = " ".join(parts)
    cleaned = redact(text)
    assert len(cleaned) <= len(text)
    assert "QQ123456C" not in cleaned
    assert "m11ae" not in cleaned
