"""The import loop: rows in, batches out, every refusal in the report.

One batch is in flight at a time and the next is built while it travels, so
a contact's rows reach intake in file order and memory stays bounded by the
batch size whatever the file's length.
"""

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Protocol

from tqdm import tqdm

from civicpulse.importer.readers import Row
from civicpulse.importer.report import RejectionReport
from civicpulse.importer.senders import Sender, Sent
from civicpulse.importer.transform import Prepared, Refused

PROGRESS_EVERY_ROWS = 1000
Check = Callable[[Prepared], Refused | None]


class Builder(Protocol):
    def build(self, row: Row) -> list[Prepared] | Refused: ...


@dataclass
class ImportSummary:
    rows: int = 0
    refused: int = 0  # refusals (records; a row refused by the mapping counts once)
    valid: int = 0  # records that passed the mapping (and, if checked, the target's rules)
    delivered: int = 0
    accepted: int = 0
    duplicates: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "rows_per_second": round(self.rows_per_second, 1)}

    def describe(self, *, dry_run: bool) -> str:
        head = f"{self.rows} rows in {self.seconds:.1f} s ({self.rows_per_second:,.0f}/s): "
        if dry_run:
            return head + f"{self.valid} valid, {self.refused} refused (dry run: nothing sent)"
        return head + (
            f"{self.accepted} accepted, {self.duplicates} duplicates (already imported), "
            f"{self.refused} refused; {self.delivered} delivered"
        )


async def run_import(
    rows: Iterator[Row],
    builder: Builder,
    report: RejectionReport,
    *,
    sender: Sender | None,
    check: Check | None,
    batch_size: int,
    progress: bool = True,
) -> ImportSummary:
    """Build every row; check it if asked; send the good ones in batches (unless dry run)."""
    summary = ImportSummary()
    started = time.monotonic()
    in_flight: asyncio.Task[Sent] | None = None
    batch: list[Prepared] = []
    bar = tqdm(
        desc="import",
        unit=" rows",
        disable=not progress,
        file=sys.stderr,
        mininterval=0.5,
    )

    def refuse(refused: Refused) -> None:
        summary.refused += 1
        report.add(refused)

    def settle(sent: Sent) -> None:
        summary.delivered += sent.delivered
        summary.accepted += sent.accepted
        summary.duplicates += sent.duplicates
        for refused in sent.refused:
            refuse(refused)
        summary.valid -= len(sent.refused)

    try:
        for row in rows:
            summary.rows += 1
            built = builder.build(row)
            if isinstance(built, Refused):
                refuse(built)
                built = []
            for record in built:
                refused = check(record) if check is not None else None
                if refused is not None:
                    refuse(refused)
                    continue
                summary.valid += 1
                if sender is not None:
                    batch.append(record)
            if len(batch) >= batch_size:
                assert sender is not None
                if in_flight is not None:
                    settle(await in_flight)
                in_flight = asyncio.create_task(sender.send(batch))
                batch = []
            if summary.rows % PROGRESS_EVERY_ROWS == 0:
                bar.update(PROGRESS_EVERY_ROWS)
                bar.set_postfix(refused=summary.refused, refresh=False)
                await asyncio.sleep(0)  # lets the batch in flight make progress
        if in_flight is not None:
            settle(await in_flight)
            in_flight = None
        if batch:
            assert sender is not None
            settle(await sender.send(batch))
        bar.update(summary.rows % PROGRESS_EVERY_ROWS)
        bar.set_postfix(refused=summary.refused)
    finally:
        if in_flight is not None:
            in_flight.cancel()
        bar.close()
        summary.seconds = time.monotonic() - started
    return summary
