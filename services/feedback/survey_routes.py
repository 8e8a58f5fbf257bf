"""The residents' side of feedback: where an answer link leads.

The survey's JSON API (`/v1/surveys/{token}`) and its GOV.UK-style pages
(`/surveys/{token}`, the answer form and the opt-out button). Every path here
gets the pages' security headers and the per-address rate limit
(`LINK_PATHS`, applied by `app.create_app` through `shared.page_guards`).
"""

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import Scope

from services.feedback import views
from services.feedback.customers import CustomerHandler
from services.feedback.domain import InvalidAnswersError
from services.feedback.links import LinkError
from services.feedback.pages import opted_out, problem, survey_form, thank_you, too_many_requests
from services.feedback.views import (
    AnswerAccepted,
    LinkProblem,
    LinkRefused,
    SurveyAnswers,
    SurveyForm,
)
from shared.http import problem_schema

LINK_STATUS = {
    "invalid_link": status.HTTP_400_BAD_REQUEST,
    "not_found": status.HTTP_404_NOT_FOUND,
    "already_answered": status.HTTP_409_CONFLICT,
    "expired": status.HTTP_410_GONE,
}
LINK_TITLES = {
    "invalid_link": "This link is not valid",
    "not_found": "Survey not found",
    "already_answered": "You have already answered this survey",
    "expired": "This survey has closed",
}
# Where answer links lead: the residents' pages and their JSON twin. These paths get
# the pages' security headers (`pages.PAGE_HEADERS`) and the per-address rate limit.
LINK_PATHS = ("/surveys/", "/v1/surveys/")

_PROBLEM = {"application/json": {"schema": problem_schema()}}


def add_survey_routes(app: FastAPI, customers: Callable[[], CustomerHandler]) -> None:
    """The survey's JSON API and pages, answered by the running `CustomerHandler`."""
    limited = "Over CIVICPULSE_FEEDBACK_RATE_LIMIT from this address; `Retry-After` says "
    link_responses: dict[int | str, dict[str, Any]] = {
        code: {"model": LinkRefused, "description": f"Link refused: `{name}`."}
        for name, code in LINK_STATUS.items()
    }
    link_responses[429] = {"description": limited + "when to retry.", "content": _PROBLEM}
    html = {"text/html": {"schema": {"type": "string"}}}
    link_pages: dict[int | str, dict[str, Any]] = {
        code: {"description": f"Link refused: `{name}` (a page saying why).", "content": html}
        for name, code in LINK_STATUS.items()
    }
    link_pages[429] = {"description": limited + "when to retry (a page).", "content": html}
    form_pages: dict[int | str, dict[str, Any]] = link_pages | {
        413: {
            "description": "Over CIVICPULSE_HTTP_MAX_BODY_BYTES: a page for browsers, "
            "else a problem.",
            "content": html | {"application/json": {"schema": problem_schema()}},
        },
        422: {
            "description": "Answers missing or invalid: the form again, with the errors.",
            "content": html,
        },
    }

    def link_problem(error: LinkError) -> JSONResponse:
        body = LinkRefused(detail=LinkProblem(code=error.code, message=error.message))
        return JSONResponse(body.model_dump(), status_code=LINK_STATUS[error.code])

    @app.get(
        "/v1/surveys/{token}",
        tags=["surveys"],
        summary="The question set behind an answer link",
        response_model=SurveyForm,
        responses=link_responses,
    )
    async def get_survey(token: str) -> SurveyForm | JSONResponse:
        try:
            request = await customers().open_survey(token)
        except LinkError as error:
            return link_problem(error)
        return views.survey_form(request)

    @app.post(
        "/v1/surveys/{token}",
        status_code=status.HTTP_201_CREATED,
        tags=["surveys"],
        summary="Answer a survey (once); publishes SatisfactionResponded",
        response_model=AnswerAccepted,
        responses=link_responses,
    )
    async def answer_survey(token: str, answers: SurveyAnswers) -> AnswerAccepted | JSONResponse:
        form = {
            "overall": str(answers.overall),
            "ease": str(answers.ease),
            "resolved": answers.resolved.value,
            "comment": answers.comment,
        }
        try:
            request = await customers().answer(token, form)
        except LinkError as error:
            return link_problem(error)
        return AnswerAccepted(request_id=request.request_id)

    def page(html: str, status_code: int = status.HTTP_200_OK) -> HTMLResponse:
        return HTMLResponse(html, status_code=status_code)

    def link_page(error: LinkError) -> HTMLResponse:
        return page(problem(LINK_TITLES[error.code], error.message), LINK_STATUS[error.code])

    @app.get(
        "/surveys/{token}", response_class=HTMLResponse, tags=["survey pages"], responses=link_pages
    )
    async def survey_page(token: str) -> HTMLResponse:
        try:
            request = await customers().open_survey(token)
        except LinkError as error:
            return link_page(error)
        return page(survey_form(f"/surveys/{token}", request.service_area))

    @app.post(
        "/surveys/{token}",
        response_class=HTMLResponse,
        tags=["survey pages"],
        responses=form_pages,
    )
    async def submit_survey_page(token: str, raw: Request) -> HTMLResponse:
        body = await raw.body()  # at most CIVICPULSE_HTTP_MAX_BODY_BYTES: see limit_request_bodies
        fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        form: dict[str, str | None] = {name: values[0] for name, values in fields.items()}
        try:
            await customers().answer(token, form)
        except LinkError as error:
            return link_page(error)
        except InvalidAnswersError as invalid:
            request = await customers().open_survey(token)
            html = survey_form(
                f"/surveys/{token}", request.service_area, values=form, errors=invalid.errors
            )
            return page(html, status.HTTP_422_UNPROCESSABLE_CONTENT)
        return page(thank_you())

    @app.post(
        "/surveys/{token}/opt-out",
        response_class=HTMLResponse,
        tags=["survey pages"],
        responses=link_pages,
    )
    async def opt_out_page(token: str) -> HTMLResponse:
        """The resident's "stop sending me surveys" button on the answer form."""
        try:
            await customers().opt_out_by_link(token)
        except LinkError as error:
            return link_page(error)
        return page(opted_out())


def too_many_requests_response(scope: Scope, wait_seconds: int) -> Response:
    """A page for residents' browsers; the JSON API's callers get a problem."""
    code = status.HTTP_429_TOO_MANY_REQUESTS
    if scope["path"].startswith("/v1/"):
        detail = f"too many requests from this address: retry after {wait_seconds} s"
        return JSONResponse({"detail": detail}, status_code=code)
    return HTMLResponse(too_many_requests(wait_seconds), status_code=code)
