"""Personal details removed from free text that residents and officers write.

Survey comments and complaint reasons are kept by the service that owns them
(feedback, complaints) and shown on the dashboard and in reports, so what a
resident types into them is cleaned first: email addresses, phone numbers, UK
postcodes, National Insurance numbers and street addresses.

scrubadub's en_GB detectors find postcodes (every Royal Mail format, any case,
with or without the space) and National Insurance numbers with a prefix HMRC
issues. Two narrow patterns of ours, run as scrubadub detectors beside them,
cover what it has no detector for: a number-and-street address ("Flat 3, 4
High Street"; scrubadub's own address detector needs libpostal, a C library no
registry ships), and the NI number *format* with any prefix, because a resident
who types HMRC's example "QQ 12 34 56 C" meant a number all the same. Phone
numbers keep our earlier pattern: scrubadub's rejects numbers that are not
allocated, such as Ofcom's drama range. docs/production.md says what is missed.

A match is replaced by a marker no longer than itself, so cleaned text always
fits the limit the raw text was checked against.
"""

import re
from collections.abc import Iterable
from functools import cache

import scrubadub
import scrubadub.detectors
import scrubadub.filth

REDACTED = "[removed]"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"(?<!\w)(\+?\d[\d ()-]{8,}\d)(?!\w)")
# Two letters, three pairs of digits, an optional letter A to D; spaces optional.
_NI_FORMAT = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-Da-d]?(?![A-Za-z0-9])"
)
_STREET_TYPES = (
    "Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Close|Drive|Dr|Way|Crescent|Cres|Grove|Place|Pl"
    "|Gardens|Gdns|Terrace|Court|Ct|Square|Sq|Walk|Hill|Row|Mews|Parade|Rise|View|Green"
)
# A house number (optionally after "Flat 3," or "Unit 2"), then one to four
# capitalised words ending in a street type: "12 Acacia Avenue", "221b Baker St".
# Capitals are required so that "2 days late" or "Route 66 bus" stay as written.
_STREET_ADDRESS = re.compile(
    r"(?:\b(?:Flat|Apartment|Unit)\s+\d+[A-Za-z]?,?\s+)?"
    r"\b\d{1,4}[A-Za-z]?,?\s+(?:[A-Z][a-z'\u2019-]+\s+){1,4}(?:" + _STREET_TYPES + r")\b\.?"
)


class _PatternDetector(scrubadub.detectors.RegexDetector):  # type: ignore[misc]
    """A detector of ours, in scrubadub's pipeline so overlapping finds are merged."""


class StreetAddressDetector(_PatternDetector):
    name = "civicpulse_street_address"
    filth_cls = scrubadub.filth.AddressFilth
    regex = _STREET_ADDRESS


class NationalInsuranceFormatDetector(_PatternDetector):
    name = "civicpulse_ni_format"
    filth_cls = scrubadub.filth.NationalInsuranceNumberFilth
    regex = _NI_FORMAT


class EmailDetector(_PatternDetector):
    name = "civicpulse_email"
    filth_cls = scrubadub.filth.EmailFilth
    regex = _EMAIL


class PhoneDetector(_PatternDetector):
    name = "civicpulse_phone"
    filth_cls = scrubadub.filth.PhoneFilth
    regex = _PHONE


@cache
def _scrubber() -> scrubadub.Scrubber:
    # Named detectors only: scrubadub's defaults include vehicle plates and
    # credentials, which match ordinary words in complaints.
    return scrubadub.Scrubber(
        detector_list=[
            scrubadub.detectors.PostalCodeDetector(locale="en_GB"),
            scrubadub.detectors.en_GB.NationalInsuranceNumberDetector(locale="en_GB"),
            scrubadub.detectors.EmailDetector(),
            StreetAddressDetector(),
            NationalInsuranceFormatDetector(),
            EmailDetector(),
            PhoneDetector(),
        ],
        post_processor_list=[],
        locale="en_GB",
    )


def _spans(text: str) -> list[tuple[int, int]]:
    """Where personal details are, overlapping finds merged, in order."""
    found: Iterable[scrubadub.filth.Filth] = _scrubber().iter_filth(text)
    merged: list[tuple[int, int]] = []
    for beg, end in sorted((f.beg, f.end) for f in found):
        if merged and beg <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((beg, end))
    return merged


def redact(text: str) -> str:
    """`text` without personal details, and never longer than it was.

    A find shorter than the marker (`a@b.co`) is masked with as many `*`.
    """
    if not text:
        return text
    parts: list[str] = []
    position = 0
    for beg, end in _spans(text):
        found = text[beg:end]
        parts += [text[position:beg], REDACTED if len(found) >= len(REDACTED) else "*" * len(found)]
        position = end
    parts.append(text[position:])
    return "".join(parts)
