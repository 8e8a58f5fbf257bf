"""Case action records: what a case-management system may send, and what it may not."""

import pytest
from pydantic import ValidationError

from services.complaints.actions import ACTION_ADAPTER, ExtendDeadline, RespondToComplaint

BASE = {
    "action_id": "cm-1",
    "complaint_id": "CMP-1",
    "source": "case-manager",
    "occurred_at": "2026-01-12T10:00:00+00:00",
}


def test_an_action_is_read_by_its_action_field() -> None:
    action = ACTION_ADAPTER.validate_python(
        {**BASE, "action": "respond", "outcome": "partly_upheld", "responder": "officer-7"}
    )

    assert isinstance(action, RespondToComplaint)
    assert action.outcome == "partly_upheld"


def test_an_extension_gives_either_a_date_or_days() -> None:
    by_days = ACTION_ADAPTER.validate_python({**BASE, "action": "extend", "days": 5, "reason": "r"})

    assert isinstance(by_days, ExtendDeadline)
    with pytest.raises(ValidationError, match="exactly one of new_due_date and days"):
        ACTION_ADAPTER.validate_python({**BASE, "action": "extend", "reason": "r"})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"action": "escalate"}, "action"),
        ({"action": "acknowledge", "occurred_at": "2026-01-12T10:00:00"}, "occurred_at"),
        ({"action": "respond", "outcome": "resolved", "responder": "x"}, "outcome"),
        ({"action": "extend", "days": 5}, "reason"),
        ({"action": "acknowledge", "name": "Jane Smith"}, "name"),
        ({"action": "open", "service_area": "waste", "channel": "pigeon"}, "channel"),
    ],
)
def test_a_bad_action_is_refused_naming_the_field(change: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        ACTION_ADAPTER.validate_python({**BASE, **change})

    assert field in str(error.value)
