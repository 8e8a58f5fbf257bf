"""The complaint procedures and the deadlines each stage sets.

Corporate complaints follow the Complaint Handling Code (two stages); the
statutory social care complaints follow their own procedures. A table, so that
the deadlines read as the rules do (docs/complaints.md has the same table and
the paragraphs each row comes from).
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from shared.events.vocabulary import ComplaintProcedure, DeadlineKind

STATUTORY_AREAS: Mapping[str, ComplaintProcedure] = {
    "adult_social_care": ComplaintProcedure.ADULT_SOCIAL_CARE,
    "childrens_social_care": ComplaintProcedure.CHILDRENS_SOCIAL_CARE,
}
# What a deadline is counted from: the action (or event) whose local date is day 0.
Anchor = Literal["receipt", "request", "acknowledgement", "panel_meeting", "panel_report"]


@dataclass(frozen=True, slots=True)
class DeadlineRule:
    """How a deadline is counted: working days (or calendar months) from an anchor."""

    counted_from: Anchor
    working_days: int = 0
    months: int = 0
    # Working days one extension may add: 0 = none allowed, None = no limit.
    max_extension_days: int | None = 0
    # Extended again and again by agreement (adult social care), not once.
    repeatable_extension: bool = False
    # A period "commencing on the day" of receipt ends the day before its anniversary.
    day_before_anniversary: bool = False


@dataclass(frozen=True, slots=True)
class StageRules:
    acknowledge: DeadlineRule | None
    respond: DeadlineRule | None
    panel_meeting: DeadlineRule | None = None
    panel_report: DeadlineRule | None = None

    def deadlines(self) -> Iterator[tuple[DeadlineKind, DeadlineRule]]:
        for kind in DeadlineKind:
            rule: DeadlineRule | None = getattr(self, kind.value)
            if rule is not None:
                yield kind, rule


@dataclass(frozen=True, slots=True)
class WindowRule:
    """How long after a stage's response the customer may ask for the next stage."""

    working_days: int = 0
    months: int = 0


@dataclass(frozen=True, slots=True)
class ProcedureRules:
    stages: tuple[StageRules, ...]
    # Statutory working days leave out weekends and bank holidays only.
    statutory_days: bool = False
    # None: the council's policy decides (corporate complaints).
    escalation_window: WindowRule | None = None

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
    # Children Act 1989 Representations Procedure (England) Regulations 2006:
    # local resolution in 10 working days, at most 20 (reg. 14); investigation
    # in 25, at most 65 (reg. 17); the review panel meets within 30 working days
    # of the request (reg. 19), reports within 5 of meeting and the council
    # responds within 15 of the report (reg. 20). 20 working days after each
    # stage's response to ask for the next (regs. 15, 18).
    ComplaintProcedure.CHILDRENS_SOCIAL_CARE: ProcedureRules(
        (
            StageRules(None, DeadlineRule("receipt", 10, max_extension_days=10)),
            StageRules(None, DeadlineRule("request", 25, max_extension_days=40)),
            StageRules(
                None,
                DeadlineRule("panel_report", 15),
                panel_meeting=DeadlineRule("request", 30),
                panel_report=DeadlineRule("panel_meeting", 5),
            ),
        ),
        statutory_days=True,
        escalation_window=WindowRule(working_days=20),
    ),
    # Local Authority Social Services and NHS Complaints (England) Regulations
    # 2009: acknowledged within 3 working days (reg. 13); one local stage with a
    # response period of six months "commencing on the day" of receipt, or
    # longer as agreed with the complainant (reg. 14), as often as agreed.
    ComplaintProcedure.ADULT_SOCIAL_CARE: ProcedureRules(
        (
            StageRules(
                DeadlineRule("receipt", 3),
                DeadlineRule(
                    "receipt",
                    months=6,
                    max_extension_days=None,
                    repeatable_extension=True,
                    day_before_anniversary=True,
                ),
            ),
        ),
        statutory_days=True,
    ),
}


def procedure_for(service_area: str) -> ComplaintProcedure:
    return STATUTORY_AREAS.get(service_area, ComplaintProcedure.CORPORATE)


@dataclass(frozen=True, slots=True)
class Policy:
    """The council's choices the Code leaves open."""

    escalation_window_working_days: int = 20
    # A calendar month instead of working days (DOMAIN.md: councils use either).
    escalation_window_calendar_month: bool = False

    @property
    def escalation_window(self) -> WindowRule:
        if self.escalation_window_calendar_month:
            return WindowRule(months=1)
        return WindowRule(working_days=self.escalation_window_working_days)

    def window_for(self, rules: ProcedureRules) -> WindowRule:
        return rules.escalation_window or self.escalation_window
