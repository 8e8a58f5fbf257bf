"""Messages for GOV.UK Notify, and contact routes: the only personal data in CivicPulse.

A message on `civicpulse.notifications` is shaped like a Notify API call
(template id, recipient, personalisation, reference), so a sender, ours or
the council's own, can hand it to Notify unchanged. It is not a catalogue
event: it carries an email address or phone number, which never travel on
the event topics.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.events.vocabulary import CustomerRef, Identifier

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
UK_MOBILE = re.compile(r"^(?:\+44|0044|0)7\d{9}$")
MESSAGE_TYPE_HEADER = "notify_message"
LONDON = ZoneInfo("Europe/London")


class ContactRoute(BaseModel):
    """How to reach a customer; email is used when both are given (Notify email is free)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: Annotated[str, Field(max_length=254, examples=["resident@example.org"])] | None = None
    mobile: Annotated[str, Field(max_length=32, examples=["07700 900123"])] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL.fullmatch(value.strip()):
            raise ValueError("not an email address")
        return None if value is None else value.strip()

    @field_validator("mobile")
    @classmethod
    def _mobile(cls, value: str | None) -> str | None:
        if value is None:
            return None
        compact = re.sub(r"[\s()-]", "", value)
        if not UK_MOBILE.fullmatch(compact):
            raise ValueError("not a UK mobile number (07... or +447...)")
        return compact

    @model_validator(mode="after")
    def _one_at_least(self) -> "ContactRoute":
        if self.email is None and self.mobile is None:
            raise ValueError("give an email address or a mobile number")
        return self


class Personalisation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    survey_link: str
    service_area: str = Field(description="Readable name, e.g. `council tax`.")
    closes_on: str = Field(description="Last day to answer, e.g. `5 February 2026`.")


class NotifyMessage(BaseModel):
    """One message for GOV.UK Notify; `reference` is the request id (spots duplicates)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notification_type: Literal["email", "sms"]
    template_id: str
    email_address: str | None = None
    phone_number: str | None = None
    personalisation: Personalisation
    reference: Identifier
    customer_ref: CustomerRef

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @property
    def recipient(self) -> str | None:
        """The address this message's type needs, if it has one."""
        return self.email_address if self.notification_type == "email" else self.phone_number


def notify_message(
    route: ContactRoute,
    *,
    request_id: str,
    customer_ref: str,
    survey_link: str,
    service_area: str,
    expires_at: datetime,
    email_template_id: str,
    sms_template_id: str,
) -> NotifyMessage:
    closes = expires_at.astimezone(LONDON)
    personalisation = Personalisation(
        survey_link=survey_link,
        service_area=service_area.replace("_", " "),
        closes_on=f"{closes.day} {closes:%B %Y}",
    )
    common = {
        "personalisation": personalisation,
        "reference": request_id,
        "customer_ref": customer_ref,
    }
    if route.email is not None:
        return NotifyMessage(
            notification_type="email",
            template_id=email_template_id,
            email_address=route.email,
            **common,
        )
    return NotifyMessage(
        notification_type="sms", template_id=sms_template_id, phone_number=route.mobile, **common
    )


# Why the sender sends nothing for a message, found when it is about to send.
ERASED = "erased"  # the contact route was deleted (DELETE /v1/customers/{ref})
OPTED_OUT = "opted_out"
ROUTE_BAD = "route_bad"  # Notify reported a permanent failure for every address held
SUPPRESSION_REASONS = (ERASED, OPTED_OUT, ROUTE_BAD)


@dataclass(frozen=True, slots=True)
class RouteState:
    """A customer's contact route as it stands when a message is about to go."""

    email: str | None = None
    mobile: str | None = None
    email_bad: bool = False
    mobile_bad: bool = False
    opted_out: bool = False


def readdressed(
    message: NotifyMessage, state: RouteState, *, email_template_id: str, sms_template_id: str
) -> NotifyMessage | str:
    """The message to the customer's current address, or the reason nothing goes.

    The address on the topic is the one the route had when the request was
    made; the table is the truth now. Email is preferred, as when the message
    was made, unless Notify has reported it permanently failing.
    """
    if state.opted_out:
        return OPTED_OUT
    if state.email is None and state.mobile is None:
        return ERASED
    if state.email is not None and not state.email_bad:
        template = message.template_id if message.notification_type == "email" else None
        return message.model_copy(
            update={
                "notification_type": "email",
                "template_id": template or email_template_id,
                "email_address": state.email,
                "phone_number": None,
            }
        )
    if state.mobile is not None and not state.mobile_bad:
        template = message.template_id if message.notification_type == "sms" else None
        return message.model_copy(
            update={
                "notification_type": "sms",
                "template_id": template or sms_template_id,
                "email_address": None,
                "phone_number": state.mobile,
            }
        )
    return ROUTE_BAD
