"""The CivicPulse event catalogue (DOMAIN.md, "Events")."""

from shared.events.catalogue import ALL_EVENTS, AnyEvent, parse_event
from shared.events.complaints import *  # noqa: F403
from shared.events.contacts import *  # noqa: F403
from shared.events.envelope import Event, FrozenModel, UtcDatetime, utc_now
from shared.events.feedback import *  # noqa: F403
from shared.events.metrics import *  # noqa: F403
from shared.events.vocabulary import *  # noqa: F403

__all__ = [
    "ALL_EVENTS",
    "AnyEvent",
    "Event",
    "FrozenModel",
    "UtcDatetime",
    "parse_event",
    "utc_now",
]
