"""`civicpulse import`'s command line: its options and the mapping format, for --help.

Kept apart from command.py so that building the CLI parser imports nothing heavy.
"""

import argparse
from pathlib import Path

DESCRIPTION = """\
Reads FILE (CSV, or .xlsx) row by row and sends each row, turned by the mapping into
a raw contact record, to intake (over HTTP, or to its raw topic with --kafka, which
reads CIVICPULSE_KAFKA_BOOTSTRAP), or into a contact route, to feedback."""

MAPPING_HELP = """\
The mapping is a YAML file (ready-made ones: deploy/mappings/; docs/import.md):

  kind: contact_records        # or contact_routes (feedback's, the only personal data)
  name: cdr                    # prefixes every idempotency key: cdr:<call id>
  source: telephony            # the publishing system (needed with --kafka)
  timezone: Europe/London      # zone of naive timestamps (default Europe/London)
  date_format: "%d/%m/%Y %H:%M:%S"   # strptime format of text times (default ISO 8601)
  ambiguous_times: refuse      # the repeated October hour: refuse | earlier | later
  idempotency_key: [Call ID]   # column(s) identifying a row for good
  fields:                      # intake's RawContactRecord field -> where its value is
    record_type:   {column: Outcome, values: {Answered: contact_received,
                                              Abandoned: call_abandoned}}
    contact_id:    {column: Call ID}
    occurred_at:   {column: Start Time}
    channel:       {value: phone}                 # a constant
    service_area:  {column: Queue, values: {CT Billing: council_tax}}
    resolved_at_first_contact: {column: FCR, values: {Y: true, N: false}}
    answered_by_team: {column: Team, required: false}   # an empty cell is left out

A `values` map is strict: a cell not in it refuses the row (`unmapped: keep` passes
it to intake as it is). Fields a record type lacks are left out of it (an abandoned
call has no channel). Columns holding personal data (names, emails, phones,
addresses, postcodes) are refused unless the mapping is kind contact_routes, whose
fields are customer_ref, email, mobile and preferred_channel.

Importing the same file again adds nothing: keys come from the key columns.
Refused rows go to the rejection report (row, column, field, reason, message).
Exit status: 0 all imported, 1 some rows refused, 2 nothing could be imported.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the export: .csv (UTF-8) or .xlsx")
    parser.add_argument("--mapping", type=Path, required=True, help="the mapping (YAML)")
    parser.add_argument("--intake-url", default=None, help="intake's base URL")
    parser.add_argument("--feedback-url", default=None, help="feedback's URL (contact routes)")
    parser.add_argument("--api-key", default=None, help="the system's key (X-API-Key)")
    parser.add_argument("--kafka", action="store_true", help="send to the raw topic instead")
    parser.add_argument(
        "--dry-run", action="store_true", help="check every row with intake's rules; send none"
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="rejection report (default FILE.rejected.csv)"
    )
    parser.add_argument(
        "--vocabulary",
        type=Path,
        default=None,
        help="service areas for checks (default: $CIVICPULSE_VOCABULARY_FILE or the shipped list)",
    )
    parser.add_argument("--batch-size", type=int, default=500, help="records per request")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
