"""The rejection report: one CSV line per refusal, written as rows are refused."""

import csv
from pathlib import Path
from types import TracebackType

from civicpulse.importer.transform import Refused

REPORT_COLUMNS = ("row", "column", "field", "reason", "message")


class RejectionReport:
    """Rows refused by the mapping or by intake (or feedback), with the column and reason."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows_refused = 0
        self._handle = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(REPORT_COLUMNS)

    def add(self, refused: Refused) -> None:
        self.rows_refused += 1
        for error in refused.errors:
            self._writer.writerow(
                (refused.row, error.column, error.field, error.reason, error.message)
            )

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "RejectionReport":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
