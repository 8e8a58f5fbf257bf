"""`python -m services.feedback`: the feedback service, the Notify sender, API keys."""

import argparse
import secrets
import sys

from pydantic import ValidationError

from services.feedback.settings import FeedbackSettings
from shared.api_keys import new_api_key
from shared.http import configure_logging, serve
from shared.production import exit_if_unsafe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.feedback",
        description="CivicPulse feedback: one satisfaction request after every resolved case "
        "(consumes civicpulse.contacts and civicpulse.complaints, publishes civicpulse.feedback "
        "and civicpulse.notifications). Configured by CIVICPULSE_* environment variables.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the service (the default)")
    commands.add_parser(
        "send",
        help="deliver civicpulse.notifications with GOV.UK Notify "
        "(needs CIVICPULSE_FEEDBACK_NOTIFY_API_KEY; give it its own CIVICPULSE_HTTP_PORT)",
    )
    new_key = commands.add_parser(
        "new-api-key", help="make an API key for a calling system (the CRM) and print its hash"
    )
    new_key.add_argument("source", help="the calling system's name, e.g. crm")
    commands.add_parser("new-token-secret", help="print a random answer-link secret")
    args = parser.parse_args(argv)

    if args.command == "new-api-key":
        print(new_api_key(args.source, "CIVICPULSE_FEEDBACK_API_KEYS"))
        return 0
    if args.command == "new-token-secret":
        print(f"CIVICPULSE_FEEDBACK_TOKEN_SECRET={secrets.token_urlsafe(48)}")
        return 0

    try:
        settings = FeedbackSettings()
    except ValidationError as error:
        print(f"feedback: invalid settings:\n{error}", file=sys.stderr)
        return 2
    if args.command == "send":
        exit_if_unsafe(settings, "feedback send", settings.sender_production_problems())
    else:
        exit_if_unsafe(settings, "feedback")
    configure_logging(settings.log_level)
    if args.command == "send":
        from services.feedback.sender import create_sender_app

        try:
            app = create_sender_app(settings)
        except ValueError as error:
            print(f"feedback send: {error}", file=sys.stderr)
            return 2
        serve(app, settings)
        return 0

    from services.feedback.app import create_app

    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
