"""Closed vocabularies that every event shares.

Service areas are an open vocabulary configured per council (see
`shared.vocabulary`), so on the wire they are slugs, checked by intake.
"""

from enum import StrEnum
from typing import Annotated

from pydantic import Field


class Channel(StrEnum):
    PHONE = "phone"
    FACE_TO_FACE = "face_to_face"
    WEB = "web"
    EMAIL = "email"
    LETTER = "letter"
    SOCIAL = "social"


class ContactKind(StrEnum):
    ENQUIRY = "enquiry"
    SERVICE_REQUEST = "service_request"
    COMPLAINT = "complaint"
    COMPLIMENT = "compliment"
    FEEDBACK = "feedback"


class ComplaintProcedure(StrEnum):
    """Which procedure a complaint follows; only `corporate` is under the Code."""

    CORPORATE = "corporate"
    ADULT_SOCIAL_CARE = "adult_social_care"
    CHILDRENS_SOCIAL_CARE = "childrens_social_care"


class ComplaintOutcome(StrEnum):
    UPHELD = "upheld"
    PARTLY_UPHELD = "partly_upheld"
    NOT_UPHELD = "not_upheld"


class DeadlineKind(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESPOND = "respond"
    # Children's social care stage 3 (2006 regulations, regs. 19 and 20).
    PANEL_MEETING = "panel_meeting"
    PANEL_REPORT = "panel_report"


class Resolved(StrEnum):
    YES = "yes"
    PARTLY = "partly"
    NO = "no"


class CaseType(StrEnum):
    CONTACT = "contact"
    COMPLAINT = "complaint"


Slug = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]{0,62}$",
        description="Lower-case identifier from a configured vocabulary.",
    ),
]
SERVICE_AREA_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
ServiceArea = Annotated[
    str,
    Field(
        pattern=SERVICE_AREA_PATTERN,
        description="Service area from the council's vocabulary (shared/vocabulary.yaml).",
        examples=["planning", "waste"],
    ),
]
CUSTOMER_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
CustomerRef = Annotated[
    str,
    Field(
        pattern=CUSTOMER_REF_PATTERN,
        description="Pseudonymous customer reference; never a name, email or phone number.",
        examples=["CUST-000123"],
    ),
]
Identifier = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$",
        description="Identifier assigned by the publishing system.",
    ),
]
