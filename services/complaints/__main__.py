"""`python -m services.complaints`: run the complaints service, or make an API key."""

import sys

from services.complaints.settings import SERVICE, ComplaintsSettings
from shared.commands import ApiKeys, service_main

main = service_main(
    service=SERVICE,
    description="CivicPulse complaints: the Complaint Handling Code's two stages and the "
    "statutory social care procedures, with working-day deadlines. Opens complaints from "
    "civicpulse.contacts, applies case actions (civicpulse.complaints.actions and the HTTP "
    "API), publishes civicpulse.complaints. Configured by CIVICPULSE_* environment "
    "variables (docs/configuration.md).",
    settings=ComplaintsSettings,
    app="services.complaints.app:create_app",
    api_keys=ApiKeys(
        "CIVICPULSE_COMPLAINTS_API_KEYS",
        caller="a case-management system",
        example="case-manager",
        read_only_variable="CIVICPULSE_COMPLAINTS_READ_API_KEYS",
    ),
)

if __name__ == "__main__":
    sys.exit(main(None))
