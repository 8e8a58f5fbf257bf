"""The complaints service's worklist, read for the dashboard's "due this week" table.

The complaints service owns deadlines and working days (its `GET /v1/complaints`
orders open complaints by next due date and says what is due and how many of
its procedure's working days are left), so the dashboard reads them there
rather than recomputing them from the metrics store. The worklist is a separate
service: when it cannot be reached the page says so, and shows the rest.
"""

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Protocol

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from services.metrics.dashboard.peers import PeerService

PAGE_SIZE = 200  # the worklist's largest page
MAX_PAGES = 5  # a thousand rows is more than a week's table should ever show


class DueComplaint(BaseModel):
    """One worklist row, as much of it as the dashboard shows (other fields are ignored)."""

    complaint_id: str
    procedure: str
    service_area: str
    stage: int
    next_due_date: date | None
    next_due: str | None
    working_days_left: int | None
    overdue: bool


class _Page(BaseModel):
    complaints: list[DueComplaint]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class DueThisWeek:
    """Open complaints due before `before` (overdue ones first), or why they are not known."""

    before: date
    rows: list[DueComplaint] = field(default_factory=list)
    truncated: bool = False  # more were due than the table shows
    problem: str | None = None

    @property
    def overdue(self) -> list[DueComplaint]:
        return [row for row in self.rows if row.overdue]


class Worklist(Protocol):
    async def due_before(self, before: date) -> DueThisWeek: ...


def end_of_week(today: date) -> date:
    """The Monday after `today`'s week (weeks run Monday to Sunday): `due_before` it."""
    return today + timedelta(days=7 - today.weekday())


class UnconfiguredWorklist:
    """No complaints service configured: the page says which settings are missing."""

    async def due_before(self, before: date) -> DueThisWeek:
        return DueThisWeek(
            before,
            problem="The complaints service is not configured for the dashboard "
            "(CIVICPULSE_METRICS_COMPLAINTS_URL and CIVICPULSE_METRICS_COMPLAINTS_API_KEY).",
        )


class HttpWorklist(PeerService):
    """`GET {url}/v1/complaints?state=open&due_before=…` with the dashboard's API key."""

    async def due_before(self, before: date) -> DueThisWeek:
        rows: list[DueComplaint] = []
        cursor: str | None = None
        try:
            async with self.client() as http:
                for _ in range(MAX_PAGES):
                    params = {
                        "state": "open",
                        "due_before": before.isoformat(),
                        "limit": str(PAGE_SIZE),
                    }
                    if cursor is not None:
                        params["cursor"] = cursor
                    response = await http.get("/v1/complaints", params=params)
                    if response.status_code != httpx.codes.OK:
                        return DueThisWeek(before, problem=_refused(response))
                    page = _Page.model_validate_json(response.content)
                    rows += page.complaints
                    cursor = page.next_cursor
                    if cursor is None:
                        break
        except httpx.HTTPError as error:
            return DueThisWeek(
                before,
                problem=f"The complaints service could not be reached ({type(error).__name__}).",
            )
        except ValidationError:
            return DueThisWeek(
                before, problem="The complaints service answered with a worklist not understood."
            )
        return DueThisWeek(before, rows, truncated=cursor is not None)


def _refused(response: httpx.Response) -> str:
    if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        return (
            "The complaints service refused the dashboard's API key "
            f"({response.status_code}): check CIVICPULSE_METRICS_COMPLAINTS_API_KEY."
        )
    return f"The complaints service answered {response.status_code}."


def worklist_of(url: str | None, api_key: SecretStr | None) -> Worklist:
    """The worklist the settings name, or one that says it is not configured."""
    if url is None or api_key is None:
        return UnconfiguredWorklist()
    return HttpWorklist(url, api_key.get_secret_value())
