"""`python -m services.feedback`: the feedback service, the Notify sender, API keys."""

import argparse
import secrets
import sys

from services.feedback.settings import SERVICE, FeedbackSettings
from shared.commands import ApiKeys, Command, OfflineCommand, service_main
from shared.http import serve


def send(_: argparse.Namespace, settings: FeedbackSettings) -> int:
    from services.feedback.sender import create_sender_app

    try:
        app = create_sender_app(settings)
    except ValueError as error:
        print(f"feedback send: {error}", file=sys.stderr)
        return 2
    serve(app, settings)
    return 0


def new_token_secret(_: argparse.Namespace) -> int:
    print(f"CIVICPULSE_FEEDBACK_TOKEN_SECRET={secrets.token_urlsafe(48)}")
    return 0


main = service_main(
    service=SERVICE,
    description="CivicPulse feedback: one satisfaction request after every resolved case "
    "(consumes civicpulse.contacts and civicpulse.complaints, publishes civicpulse.feedback "
    "and civicpulse.notifications). Configured by CIVICPULSE_* environment variables.",
    settings=FeedbackSettings,
    app="services.feedback.app:create_app",
    api_keys=ApiKeys(
        "CIVICPULSE_FEEDBACK_API_KEYS", caller="a calling system (the CRM)", example="crm"
    ),
    commands=[
        Command(
            "send",
            "deliver civicpulse.notifications with GOV.UK Notify "
            "(needs CIVICPULSE_FEEDBACK_NOTIFY_API_KEY; give it its own CIVICPULSE_HTTP_PORT)",
            send,
            production_problems=FeedbackSettings.sender_production_problems,
        )
    ],
    offline=[
        OfflineCommand("new-token-secret", "print a random answer-link secret", new_token_secret)
    ],
)

if __name__ == "__main__":
    sys.exit(main(None))
