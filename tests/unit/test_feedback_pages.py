"""The answer form is accessible without JavaScript: labels, fieldsets, an error summary."""

import re
from html.parser import HTMLParser

from services.feedback.domain import QUESTIONS, AnswerError
from services.feedback.pages import problem, survey_form, thank_you


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def parse(html: str) -> Elements:
    elements = Elements()
    elements.feed(html)
    return elements


def test_every_input_has_a_label_and_every_choice_question_a_fieldset_with_a_legend() -> None:
    page = parse(survey_form("/surveys/t", "waste"))

    labelled = {label["for"] for label in page.all("label")}
    inputs = [i["id"] for i in page.all("input")] + [t["id"] for t in page.all("textarea")]
    assert len(inputs) == 5 + 7 + 3 + 1
    assert set(inputs) <= labelled
    assert len(page.all("fieldset")) == len(page.all("legend")) == 3
    assert page.all("script") == []
    assert page.all("form")[0]["method"] == "post"


def test_errors_are_summarised_with_links_to_their_fields() -> None:
    errors = [AnswerError("ease", "Select how easy it was, from 1 to 7")]

    html = survey_form("/surveys/t", "waste", values={"overall": "4"}, errors=errors)
    page = parse(html)

    assert "<title>Error: " in html
    assert [a["href"] for a in page.all("a")] == ["#ease-1"]
    assert {"id": "ease-1", "type": "radio", "name": "ease", "value": "1"}.items() <= (
        page.all("input")[5].items()
    )
    checked = [i["id"] for i in page.all("input") if "checked" in i]
    assert checked == ["overall-4"]
    assert 'aria-describedby="ease-hint ease-error"' in html


def test_what_the_resident_typed_is_escaped() -> None:
    html = survey_form("/surveys/t", "waste", values={"comment": "<script>alert(1)</script>"})

    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_the_questions_are_the_same_everywhere() -> None:
    assert [(q.id, len(q.choices)) for q in QUESTIONS] == [
        ("overall", 5),
        ("ease", 7),
        ("resolved", 3),
        ("comment", 0),
    ]


def test_the_thank_you_and_problem_pages_have_one_heading_each() -> None:
    for html in (thank_you(), problem("This survey has closed", "Thank you anyway.")):
        assert len(re.findall("<h1>", html)) == 1
        assert '<html lang="en">' in html
