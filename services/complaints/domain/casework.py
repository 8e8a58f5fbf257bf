"""Case work beside the stages: extensions, the review panel, the Ombudsman, learning actions."""

from typing import Any

from services.complaints.actions import (
    CompleteLearningAction,
    ExtendDeadline,
    RecordOmbudsmanDecision,
    RecordPanelMeeting,
    RecordPanelReport,
    ReferToOmbudsman,
)
from services.complaints.domain.model import (
    Complaint,
    OmbudsmanCase,
    RefusalReason,
    Refused,
    Status,
)
from services.complaints.domain.transition import Transition
from services.complaints.procedures import Anchor
from shared.events.complaints import (
    ComplaintDeadlineExtended,
    ComplaintDeadlineExtendedPayload,
    ComplaintLearningActionCompleted,
    ComplaintLearningActionCompletedPayload,
    ComplaintOmbudsmanDecided,
    ComplaintOmbudsmanDecidedPayload,
    ComplaintPanelStepRecorded,
    ComplaintPanelStepRecordedPayload,
    ComplaintReferredToOmbudsman,
    ComplaintReferredToOmbudsmanPayload,
)
from shared.events.vocabulary import DeadlineKind


def extend_deadline(t: Transition, action: ExtendDeadline) -> None:
    complaint = t.complaint
    stage = complaint.stage + (complaint.status is Status.ESCALATION_REQUESTED)
    deadline = complaint.deadline(stage, action.deadline)
    if deadline is None or deadline.met_on is not None or deadline.cancelled:
        raise Refused(
            RefusalReason.NO_PENDING_DEADLINE,
            f"no open {action.deadline.value} deadline at stage {stage}",
        )
    rule = dict(complaint.rules.stage(stage).deadlines()).get(action.deadline)
    if rule is None or action.deadline is not DeadlineKind.RESPOND or rule.max_extension_days == 0:
        raise Refused(
            RefusalReason.NOT_EXTENDABLE,
            f"the stage {stage} {action.deadline.value} deadline cannot be extended",
        )
    if deadline.extension_days and not rule.repeatable_extension:
        raise Refused(
            RefusalReason.ALREADY_EXTENDED,
            f"the stage {stage} response deadline was already extended once, to "
            f"{deadline.due_date.isoformat()}",
        )
    if deadline.breached or t.day > deadline.due_date:
        raise Refused(
            RefusalReason.DEADLINE_PASSED,
            f"the deadline passed on {deadline.due_date.isoformat()}; an extension is "
            "agreed before it",
        )
    days_of = t.context.calendar
    if deadline.statutory_days:
        days_of = days_of.statutory()
    if action.new_due_date is not None:
        if not days_of.is_working_day(action.new_due_date):
            raise Refused(
                RefusalReason.NOT_A_WORKING_DAY,
                f"{action.new_due_date.isoformat()} is not a working day",
            )
        days = days_of.working_days_between(deadline.due_date, action.new_due_date)
    else:
        days = action.days or 0
    if days < 1 or (rule.max_extension_days is not None and days > rule.max_extension_days):
        raise Refused(
            RefusalReason.EXTENSION_TOO_LONG,
            f"an extension adds 1 to {rule.max_extension_days} working days after "
            f"{deadline.due_date.isoformat()}; this one adds {days}",
        )
    changes: dict[str, Any] = {
        "extension_days": deadline.extension_days + days,
        "extension_reason": action.reason,
    }
    if rule.repeatable_extension:  # agreed with the complainant: a date, kept as agreed
        changes["agreed_due_date"] = days_of.add_working_days(deadline.due_date, days)
    extended = deadline.model_copy(update=changes)
    extended = extended.model_copy(update={"due_date": extended.due_on(t.context.calendar)})
    t.replace_deadline(deadline, extended)
    t.emit(
        ComplaintDeadlineExtended,
        ComplaintDeadlineExtendedPayload(
            **t.facts(),
            stage=stage,
            deadline=action.deadline,
            new_due_date=extended.due_date,
        ),  # the reason stays with the case (the deadline and its history entry)
    )


def record_panel_meeting(t: Transition, action: RecordPanelMeeting) -> None:
    _panel_step(t, DeadlineKind.PANEL_MEETING, "panel_meeting")


def record_panel_report(t: Transition, action: RecordPanelReport) -> None:
    _panel_step(t, DeadlineKind.PANEL_REPORT, "panel_report")


def _panel_step(t: Transition, kind: DeadlineKind, starts: Anchor) -> None:
    t.require(Status.ACKNOWLEDGED)
    deadline = t.complaint.deadline(t.complaint.stage, kind)
    if deadline is None or deadline.met_on is not None or deadline.cancelled:
        raise Refused(
            RefusalReason.NO_PENDING_DEADLINE,
            f"no {kind.value} is awaited at stage {t.complaint.stage} of the "
            f"{t.complaint.procedure.value} procedure",
        )
    t.meet(t.complaint.stage, kind)
    t.emit(
        ComplaintPanelStepRecorded,
        ComplaintPanelStepRecordedPayload(**t.facts(), stage=t.complaint.stage, step=kind),
    )
    t.start(t.complaint.stage, starts)


def refer_to_ombudsman(t: Transition, action: ReferToOmbudsman) -> None:
    complaint = t.complaint
    if complaint.ombudsman is not None:
        raise Refused(RefusalReason.ALREADY_REFERRED, "the complaint is already with the Ombudsman")
    grounds = _referral_grounds(complaint)
    if grounds is None:
        raise Refused(
            RefusalReason.NOT_YET_REFERABLE,
            "the Ombudsman takes a complaint after the council's final response, a refusal "
            "or a missed deadline; none has happened yet",
        )
    t.cancel_pending()
    t.use_window()
    t.update(
        status=Status.REFERRED_TO_OMBUDSMAN,
        ombudsman=OmbudsmanCase(
            ombudsman=action.ombudsman, reference=action.ombudsman_reference, referred_on=t.day
        ),
    )
    t.emit(
        ComplaintReferredToOmbudsman,
        ComplaintReferredToOmbudsmanPayload(
            **t.facts(),
            ombudsman=action.ombudsman,
            ombudsman_reference=action.ombudsman_reference,
            grounds=grounds,
        ),
    )


def _referral_grounds(complaint: Complaint) -> Any:
    window = complaint.escalation_window
    if complaint.final_response_given or (window is not None and window.lapsed):
        return "final_response"
    if complaint.refused is not None:
        return "refusal"
    if any(d.breached and not d.breach_corrected for d in complaint.deadlines):
        return "missed_deadline"
    return None


def record_ombudsman_decision(t: Transition, action: RecordOmbudsmanDecision) -> None:
    case = t.complaint.ombudsman
    if case is None:
        raise Refused(RefusalReason.NOT_REFERRED, "the complaint was not referred")
    if case.decision is not None:
        raise Refused(RefusalReason.ALREADY_DONE, f"the Ombudsman already decided {case.decision}")
    reference = action.ombudsman_reference or case.reference
    t.update(
        ombudsman=case.model_copy(
            update={"decision": action.decision, "decided_on": t.day, "reference": reference}
        )
    )
    t.emit(
        ComplaintOmbudsmanDecided,
        ComplaintOmbudsmanDecidedPayload(
            **t.facts(), ombudsman_reference=reference, decision=action.decision
        ),
    )


def complete_learning_action(t: Transition, action: CompleteLearningAction) -> None:
    tracked = next(
        (
            a
            for a in t.complaint.learning_actions
            if a.learning_action_id == action.learning_action_id
        ),
        None,
    )
    if tracked is None:
        raise Refused(
            RefusalReason.UNKNOWN_LEARNING_ACTION,
            f"no learning action {action.learning_action_id} on this complaint",
        )
    if tracked.completed_on is not None:
        raise Refused(
            RefusalReason.ALREADY_DONE, f"done on {tracked.completed_on.isoformat()} already"
        )
    done = tracked.model_copy(update={"completed_on": t.day})
    t.update(
        learning_actions=tuple(done if a is tracked else a for a in t.complaint.learning_actions)
    )
    t.emit(
        ComplaintLearningActionCompleted,
        ComplaintLearningActionCompletedPayload(
            **t.facts(),
            learning_action_id=tracked.learning_action_id,
            owner_team=tracked.owner_team,
            due_date=tracked.due_date,
            completed_on=t.day,
            on_time=None if tracked.due_date is None else t.day <= tracked.due_date,
        ),
    )
