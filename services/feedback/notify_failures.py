"""What GOV.UK Notify's errors mean for the sender (services.feedback.sender).

Read from notifications-python-client 13: every failed request raises
`HTTPError`, whose `status_code` is the response's, or 503 when there was no
response (a network error or timeout: `HTTP503Error`).
"""

from datetime import datetime
from email.utils import parsedate_to_datetime

from notifications_python_client.errors import HTTPError
from requests import Response

from shared.dead_letters import DependencyUnavailableError

# Notify's answers that mean the key, not the message, is wrong.
STOP_REASONS = {401: "unauthorized", 403: "forbidden"}


class MessageRefusedError(Exception):
    """Notify refused the message for a reason a retry will not fix."""


class NotifyUnavailableError(DependencyUnavailableError):
    """Notify is down, unreachable or rate-limiting: redeliver the batch later."""


class NotifyKeyRefusedError(DependencyUnavailableError):
    """Notify refused the API key (401 or 403): the sender stops until restarted."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"Notify refused the API key ({reason}): {message}")
        self.reason = reason


def retry_after_seconds(response: Response | None, now: datetime) -> float | None:
    """HTTP Retry-After (seconds, or a date), if the response has a readable one."""
    value = None if response is None else response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def notify_failure(error: HTTPError, now: datetime) -> Exception:
    """What one of Notify's errors means for the sender (the client gives network errors 503)."""
    code = error.status_code
    if code in STOP_REASONS:
        return NotifyKeyRefusedError(STOP_REASONS[code], str(error))
    if code == 429 or code >= 500:
        return NotifyUnavailableError(
            str(error), retry_after_seconds=retry_after_seconds(error.response, now)
        )
    return MessageRefusedError(str(error))
