"""The annual complaints report's notes (reasons, decisions, learning actions) in PostgreSQL."""

import json
from collections.abc import Sequence

from services.metrics.domain.complaint_notes import ComplaintNote, NoteKind
from services.metrics.periods import DateRange
from services.metrics.store.base import StoreBase


class Notes(StoreBase):
    async def record_complaint_notes(self, generation: int, notes: Sequence[ComplaintNote]) -> None:
        """Write a batch's notes; a note already there (a replayed event) is kept."""
        if not notes:
            return
        await self._tx.execute(
            """
            INSERT INTO metrics_complaint_notes
                (generation, event_id, complaint_id, kind, day, procedure, service_area,
                 stage, detail)
            SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::date[],
                                     $6::text[], $7::text[], $8::int[], $9::jsonb[])
            ON CONFLICT DO NOTHING
            """,
            generation,
            [n.event_id for n in notes],
            [n.complaint_id for n in notes],
            [n.kind.value for n in notes],
            [n.day for n in notes],
            [n.procedure for n in notes],
            [n.service_area for n in notes],
            [n.stage for n in notes],
            [json.dumps(n.detail) for n in notes],
        )

    async def complaint_notes(self, generation: int, span: DateRange) -> list[ComplaintNote]:
        """Every note dated in `span`, and every learning action's completion whenever done
        (a learning action set in the year may be done after it)."""
        rows = await self._db.fetch(
            """
            SELECT event_id, complaint_id, kind, day, procedure, service_area, stage, detail
            FROM metrics_complaint_notes
            WHERE generation = $1 AND (day BETWEEN $2 AND $3 OR kind = $4)
            ORDER BY day, complaint_id, event_id, kind
            """,
            generation,
            span.start,
            span.end,
            NoteKind.LEARNING_ACTION_DONE.value,
        )
        return [
            ComplaintNote(
                row["event_id"],
                row["complaint_id"],
                NoteKind(row["kind"]),
                row["day"],
                row["procedure"],
                row["service_area"],
                row["stage"],
                json.loads(row["detail"]),
            )
            for row in rows
        ]
