"""The complaint procedures and the deadlines each stage sets.

Corporate complaints follow the Complaint Handling Code (two stages); the
statutory social care complaints follow their own procedures. A table, so that
the deadlines read as the rules do (docs/complaints.md has the same table).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shared.events.vocabulary import ComplaintProcedure

STATUTORY_AREAS: Mapping[str, ComplaintProcedure] = {
    "adult_social_care": ComplaintProcedure.ADULT_SOCIAL_CARE,
    "childrens_social_care": ComplaintProcedure.CHILDRENS_SOCIAL_CARE,
}


@dataclass(frozen=True, slots=True)
class DeadlineRule:
    """How a deadline is counted: working days (or calendar months) from an anchor."""

    counted_from: Literal["receipt", "request", "acknowledgement"]
    working_days: int = 0
    months: int = 0
    # Working days one extension may add: 0 = none allowed, None = no limit.
    max_extension_days: int | None = 0


@dataclass(frozen=True, slots=True)
class StageRules:
    acknowledge: DeadlineRule | None
    respond: DeadlineRule | None


@dataclass(frozen=True, slots=True)
class ProcedureRules:
    stages: tuple[StageRules, ...]

    @property
    def final_stage(self) -> int:
        return len(self.stages)

    def stage(self, number: int) -> StageRules:
        return self.stages[number - 1]


PROCEDURES: Mapping[ComplaintProcedure, ProcedureRules] = {
    # The Complaint Handling Code: stage 1 acknowledged within 5 working days of
    # receipt, answered within 10 of acknowledgement (+10 at most); stage 2
    # acknowledged within 5 of the request, answered within 20 (+20 at most).
    ComplaintProcedure.CORPORATE: ProcedureRules(
        (
            StageRules(
                DeadlineRule("receipt", 5),
                DeadlineRule("acknowledgement", 10, max_extension_days=10),
            ),
            StageRules(
                DeadlineRule("request", 5),
                DeadlineRule("acknowledgement", 20, max_extension_days=20),
            ),
        )
    ),
    # Children Act 1989 representations procedure: local resolution in 10
    # working days, at most 20; investigation in 25, at most 65; review panel
    # within 30 working days of the request.
    ComplaintProcedure.CHILDRENS_SOCIAL_CARE: ProcedureRules(
        (
            StageRules(None, DeadlineRule("receipt", 10, max_extension_days=10)),
            StageRules(None, DeadlineRule("request", 25, max_extension_days=40)),
            StageRules(None, DeadlineRule("request", 30)),
        )
    ),
    # 2009 regulations: one local stage, acknowledged within 3 working days; the
    # response period is agreed with the complainant (six months as benchmark),
    # so an agreed extension has no fixed limit.
    ComplaintProcedure.ADULT_SOCIAL_CARE: ProcedureRules(
        (
            StageRules(
                DeadlineRule("receipt", 3),
                DeadlineRule("receipt", months=6, max_extension_days=None),
            ),
        )
    ),
}


def procedure_for(service_area: str) -> ComplaintProcedure:
    return STATUTORY_AREAS.get(service_area, ComplaintProcedure.CORPORATE)


@dataclass(frozen=True, slots=True)
class Policy:
    """The council's choices the Code leaves open."""

    escalation_window_working_days: int = 20
