"""`python -m services.intake`: run the intake service, or make an API key."""

import sys

from services.intake.settings import SERVICE, IntakeSettings
from shared.commands import ApiKeys, service_main

main = service_main(
    service=SERVICE,
    description="CivicPulse intake: validates contact records from council systems "
    "(Kafka topic civicpulse.contacts.raw and POST /v1/contacts) and publishes canonical "
    "events. Configured by CIVICPULSE_* environment variables.",
    settings=IntakeSettings,
    app="services.intake.app:create_app",
    api_keys=ApiKeys("CIVICPULSE_INTAKE_API_KEYS", caller="a source system", example="crm"),
)

if __name__ == "__main__":
    sys.exit(main(None))
