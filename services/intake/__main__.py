"""`python -m services.intake`: run the intake service, or make an API key."""

import argparse
import sys

from services.intake.settings import IntakeSettings
from shared.api_keys import new_api_key
from shared.http import configure_logging, serve
from shared.production import exit_if_unsafe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.intake",
        description="CivicPulse intake: validates contact records from council systems "
        "(Kafka topic civicpulse.contacts.raw and POST /v1/contacts) and publishes canonical "
        "events. Configured by CIVICPULSE_* environment variables.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the service (the default)")
    new_key = commands.add_parser(
        "new-api-key", help="make an API key for a source system and print its hash"
    )
    new_key.add_argument("source", help="the source system's name, e.g. crm")
    args = parser.parse_args(argv)

    if args.command == "new-api-key":
        print(new_api_key(args.source, "CIVICPULSE_INTAKE_API_KEYS"))
        return 0

    from services.intake.app import create_app

    settings = IntakeSettings()
    exit_if_unsafe(settings, "intake")
    configure_logging(settings.log_level)
    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
