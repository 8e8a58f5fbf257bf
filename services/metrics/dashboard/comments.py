"""Survey comments for the dashboard's Satisfaction page, read from the feedback service.

Feedback owns the comments: SatisfactionResponded (version 2) carries only a
`comment_ref`, so that the text can be erased with the customer and never sits
on a topic kept for ever. Metrics keeps no copy; the page asks feedback's
`GET /v1/comments` each time it is shown. When feedback cannot be reached the
page says so, and shows the rest.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from services.metrics.dashboard.peers import PeerService


class SurveyComment(BaseModel):
    """One comment as the page shows it (other fields feedback sends are ignored)."""

    answered_at: datetime
    service_area: str
    channel: str
    overall: int
    comment: str


class _Comments(BaseModel):
    comments: list[SurveyComment]


@dataclass(frozen=True, slots=True)
class LatestComments:
    rows: list[SurveyComment] = field(default_factory=list)
    problem: str | None = None


class CommentSource(Protocol):
    async def latest(self, limit: int) -> LatestComments: ...


class UnconfiguredComments:
    async def latest(self, limit: int) -> LatestComments:
        return LatestComments(
            problem="The feedback service, which keeps the comments, is not configured for "
            "the dashboard (CIVICPULSE_METRICS_FEEDBACK_URL and "
            "CIVICPULSE_METRICS_FEEDBACK_API_KEY)."
        )


class HttpComments(PeerService):
    """`GET {url}/v1/comments?limit=…` with the dashboard's API key."""

    async def latest(self, limit: int) -> LatestComments:
        try:
            async with self.client() as http:
                response = await http.get("/v1/comments", params={"limit": str(limit)})
        except httpx.HTTPError as error:
            return LatestComments(
                problem=f"The feedback service could not be reached ({type(error).__name__})."
            )
        if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            return LatestComments(
                problem="The feedback service refused the dashboard's API key "
                f"({response.status_code}): check CIVICPULSE_METRICS_FEEDBACK_API_KEY."
            )
        if response.status_code != httpx.codes.OK:
            return LatestComments(problem=f"The feedback service answered {response.status_code}.")
        try:
            return LatestComments(_Comments.model_validate_json(response.content).comments)
        except ValidationError:
            return LatestComments(
                problem="The feedback service answered with comments not understood."
            )


def comments_of(url: str | None, api_key: SecretStr | None) -> CommentSource:
    """The comment source the settings name, or one that says it is not configured."""
    if url is None or api_key is None:
        return UnconfiguredComments()
    return HttpComments(url, api_key.get_secret_value())
