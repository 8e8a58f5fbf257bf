"""`python -m services.complaints`: run the complaints service."""

import argparse
import sys

from services.complaints.settings import ComplaintsSettings
from shared.api_keys import new_api_key
from shared.http import configure_logging, serve
from shared.production import exit_if_unsafe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.complaints",
        description="CivicPulse complaints: the Complaint Handling Code's two stages and the "
        "statutory social care procedures, with working-day deadlines. Opens complaints from "
        "civicpulse.contacts, applies case actions (civicpulse.complaints.actions and the HTTP "
        "API), publishes civicpulse.complaints. Configured by CIVICPULSE_* environment "
        "variables (docs/configuration.md).",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the service (the default)")
    new_key = commands.add_parser(
        "new-api-key", help="make an API key for a case-management system and print its hash"
    )
    new_key.add_argument("source", help="the system's name, e.g. case-manager")
    args = parser.parse_args(argv)

    if args.command == "new-api-key":
        print(new_api_key(args.source, "CIVICPULSE_COMPLAINTS_API_KEYS"))
        return 0

    from services.complaints.app import create_app

    settings = ComplaintsSettings()
    exit_if_unsafe(settings, "complaints")
    configure_logging(settings.log_level)
    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
