"""The answer form residents see: plain server-rendered HTML, no JavaScript, GOV.UK-like.

Each question is a fieldset with a legend and hint; errors are listed in an
error summary at the top (focusable, linking to each field) and beside the
field, as the GOV.UK Design System does, so screen readers announce them.
"""

import hashlib
import math
from base64 import b64encode
from collections.abc import Mapping, Sequence
from html import escape

from services.feedback.domain import QUESTIONS, AnswerError, Question

STYLE = """
body{margin:0;font-family:Arial,sans-serif;font-size:19px;line-height:1.4;color:#0b0c0c}
header{background:#0b0c0c;color:#fff;padding:10px 15px;font-weight:bold}
main{max-width:640px;margin:0 auto;padding:20px 15px}
h1{font-size:32px;line-height:1.1;margin:0 0 20px}
fieldset{border:0;margin:0 0 30px;padding:0}
legend{font-weight:bold;font-size:24px;margin-bottom:5px}
.hint{color:#505a5f;margin-bottom:10px}
.choice{display:block;margin:8px 0;min-height:40px}
.choice input{width:28px;height:28px;vertical-align:middle;margin-right:10px}
label.block{display:block;font-weight:bold;font-size:24px;margin-bottom:5px}
textarea{width:100%;box-sizing:border-box;font-size:19px;border:2px solid #0b0c0c;padding:5px}
button{background:#00703c;color:#fff;border:0;box-shadow:0 2px 0 #002d18;font-size:19px;
padding:10px 15px;cursor:pointer}
button.secondary{background:#f3f2f1;color:#0b0c0c;box-shadow:0 2px 0 #929191}
button:focus,input:focus,textarea:focus,a:focus{outline:3px solid #fd0;outline-offset:0}
.error-summary{border:5px solid #d4351c;padding:15px;margin-bottom:30px}
.error-summary h2{margin-top:0;font-size:24px}
.error-summary a{color:#d4351c;font-weight:bold}
.error-message{color:#d4351c;font-weight:bold;display:block;margin-bottom:10px}
.has-error{border-left:5px solid #d4351c;padding-left:15px}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
.panel{background:#00703c;color:#fff;padding:25px;text-align:center;margin-bottom:20px}
"""


# The pages' one stylesheet is inline, allowed by its hash: nothing else may load, run,
# frame the page or be a form's target elsewhere.
STYLE_HASH = b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# Every response under the answer links' paths, pages and API alike. The token in the
# URL is a live answer link, so no Referer may carry it to another site (no-referrer),
# and no cache may keep it.
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _page(title: str, body: str, *, has_errors: bool = False) -> str:
    prefix = "Error: " if has_errors else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{escape(prefix + title)} - Council customer feedback</title>
<style>{STYLE}</style>
</head>
<body>
<header>Council customer feedback</header>
<main id="main-content">
{body}
</main>
</body>
</html>
"""


def _field_id(question: Question) -> str:
    # The error summary links to the first radio of a question, or the text box.
    return f"{question.id}-{question.choices[0].value}" if question.choices else question.id


def _error_summary(errors: Sequence[AnswerError]) -> str:
    by_id = {question.id: question for question in QUESTIONS}
    items = "".join(
        f'<li><a href="#{_field_id(by_id[e.field])}">{escape(e.message)}</a></li>' for e in errors
    )
    return (
        '<div class="error-summary" role="alert" aria-labelledby="error-summary-title" '
        'tabindex="-1">'
        '<h2 id="error-summary-title">There is a problem</h2>'
        f"<ul>{items}</ul></div>"
    )


def _question(question: Question, value: str, error: str | None) -> str:
    hint_id = f"{question.id}-hint"
    error_id = f"{question.id}-error"
    described = " ".join(
        ident for ident, shown in ((hint_id, question.hint), (error_id, error)) if shown
    )
    hint = (
        f'<div id="{hint_id}" class="hint">{escape(question.hint)}</div>' if question.hint else ""
    )
    error_html = (
        f'<span id="{error_id}" class="error-message"><span class="visually-hidden">Error: '
        f"</span>{escape(error)}</span>"
        if error
        else ""
    )
    described_by = f' aria-describedby="{described}"' if described else ""
    wrapper = ' class="has-error"' if error else ""
    if not question.choices:
        return (
            f"<div{wrapper}>"
            f'<label class="block" for="{question.id}">{escape(question.text)}</label>'
            f"{hint}{error_html}"
            f'<textarea id="{question.id}" name="{question.id}" rows="5" '
            f'maxlength="{question.max_length}"{described_by}>'
            f"{escape(value)}</textarea></div>"
        )
    choices = "".join(
        f'<div class="choice"><input type="radio" id="{question.id}-{c.value}" '
        f'name="{question.id}" value="{escape(c.value)}"'
        f"{' checked' if c.value == value else ''}>"
        f'<label for="{question.id}-{c.value}">{escape(c.label)}</label></div>'
        for c in question.choices
    )
    return (
        f"<fieldset{wrapper}{described_by}>"
        f"<legend>{escape(question.text)}</legend>{hint}{error_html}{choices}</fieldset>"
    )


def survey_form(
    action: str,
    service_area: str,
    *,
    values: Mapping[str, str | None] | None = None,
    errors: Sequence[AnswerError] = (),
) -> str:
    values = values or {}
    by_field = {error.field: error.message for error in errors}
    questions = "".join(_question(q, values.get(q.id) or "", by_field.get(q.id)) for q in QUESTIONS)
    area = escape(service_area.replace("_", " "))
    body = (
        (_error_summary(errors) if errors else "")
        + "<h1>Tell us about your recent contact with us</h1>"
        + f"<p>You recently contacted the council about <strong>{area}</strong>. "
        "Your answers help us improve our services. It takes about a minute.</p>"
        + f'<form method="post" action="{escape(action)}" novalidate>'
        + questions
        + '<button type="submit">Send your answers</button></form>'
        + "<h2>Do not want surveys like this?</h2>"
        + f'<form method="post" action="{escape(action)}/opt-out">'
        + '<button type="submit" class="secondary">Stop sending me satisfaction surveys</button>'
        + "</form>"
    )
    return _page("Tell us about your recent contact", body, has_errors=bool(errors))


def opted_out() -> str:
    body = (
        '<div class="panel"><h1>You will not get satisfaction surveys from us</h1></div>'
        "<p>We have stopped sending you requests for feedback. This does not change "
        "anything else about how we deal with you.</p>"
    )
    return _page("You will not get satisfaction surveys from us", body)


def thank_you() -> str:
    body = (
        '<div class="panel"><h1>Thank you for your feedback</h1></div>'
        "<p>We have received your answers. We use them to improve our services.</p>"
        "<p>You do not need to do anything else.</p>"
    )
    return _page("Thank you for your feedback", body)


def too_many_requests(wait_seconds: int) -> str:
    wait = (
        f"{wait_seconds} seconds"
        if wait_seconds < 120
        else f"{math.ceil(wait_seconds / 60)} minutes"
    )
    return problem(
        "Sorry, there have been too many attempts",
        f"There have been too many requests from your internet connection. Wait {wait}, "
        "then open the link in your message again. If you were sending answers, they have "
        "not been recorded.",
    )


def problem(title: str, message: str) -> str:
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>")
