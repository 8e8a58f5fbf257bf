"""The complaint lifecycle: which action is allowed when, and the events each produces.

`decide` looks the action's type up in `TRANSITIONS` and calls its verb-named
transition with a `Transition` (the complaint being changed and the events so
far). A transition checks its rule, raising `Refused` with a reason when it
does not hold, and changes the state; nothing is kept from a refused action.
"""

from collections.abc import Callable
from typing import Any

from services.complaints.actions import (
    AcknowledgeComplaint,
    Action,
    CloseComplaint,
    CompleteLearningAction,
    ExtendDeadline,
    OpenComplaint,
    RecordOmbudsmanDecision,
    RecordPanelMeeting,
    RecordPanelReport,
    ReferToOmbudsman,
    RefuseEscalation,
    RequestEscalation,
    RespondToComplaint,
    WithdrawComplaint,
)
from services.complaints.domain.casework import (
    complete_learning_action,
    extend_deadline,
    record_ombudsman_decision,
    record_panel_meeting,
    record_panel_report,
    refer_to_ombudsman,
)
from services.complaints.domain.model import (
    Complaint,
    Context,
    Decision,
    EscalationWindow,
    Refusal,
    RefusalReason,
    Refused,
    Status,
    TrackedLearningAction,
    complaint_id_for_contact,
)
from services.complaints.domain.transition import Transition, same_person
from services.complaints.procedures import procedure_for
from shared.events.complaints import (
    CloseReason,
    ComplaintAcknowledged,
    ComplaintAcknowledgedPayload,
    ComplaintClosed,
    ComplaintClosedPayload,
    ComplaintEscalated,
    ComplaintEscalatedPayload,
    ComplaintEscalationRefused,
    ComplaintEscalationRefusedPayload,
    ComplaintEscalationRequested,
    ComplaintEscalationRequestedPayload,
    ComplaintOpened,
    ComplaintOpenedPayload,
    ComplaintResponded,
    ComplaintRespondedPayload,
    ComplaintWithdrawn,
    ComplaintWithdrawnPayload,
    LearningAction,
)
from shared.events.contacts import ContactReceived
from shared.events.vocabulary import ContactKind, DeadlineKind

UNANSWERED = frozenset({Status.RECEIVED, Status.ACKNOWLEDGED, Status.ESCALATION_REQUESTED})


def decide(complaint: Complaint | None, action: Action, context: Context) -> Decision | Refusal:
    """Apply `action` to `complaint`, or say why it cannot be applied."""
    try:
        if isinstance(action, OpenComplaint):
            if complaint is not None:
                raise Refused(
                    RefusalReason.ALREADY_OPEN, f"complaint {action.complaint_id} already exists"
                )
            return open_complaint(action, context)
        if complaint is None:
            raise Refused(
                RefusalReason.UNKNOWN_COMPLAINT,
                f"no complaint {action.complaint_id}; open it first",
            )
        transition = Transition(complaint, action, context)
        TRANSITIONS[type(action)](transition, action)
        return transition.decision()
    except Refused as refused:
        return refused.refusal


def open_action_for(contact: ContactReceived) -> OpenComplaint | None:
    """The complaint a contact of kind `complaint` opens; its id is derived from the contact."""
    if contact.payload.kind is not ContactKind.COMPLAINT:
        return None
    return OpenComplaint(
        action="open",
        action_id=f"contact:{contact.contact_id}",
        complaint_id=complaint_id_for_contact(contact.contact_id),
        source=contact.source,
        occurred_at=contact.occurred_at,
        service_area=contact.payload.service_area,
        channel=contact.payload.channel,
        customer_ref=contact.payload.customer_ref,
        contact_id=contact.contact_id,
    )


# -- the transitions, one per action ----------------------------------------------


def open_complaint(action: OpenComplaint, context: Context) -> Decision:
    procedure = procedure_for(action.service_area)
    complaint = Complaint(
        complaint_id=action.complaint_id,
        procedure=procedure,
        service_area=action.service_area,
        channel=action.channel,
        customer_ref=action.customer_ref,
        contact_id=action.contact_id,
        received_at=action.occurred_at,
    )
    transition = Transition(complaint, action, context)
    transition.emit(
        ComplaintOpened,
        ComplaintOpenedPayload(
            service_area=action.service_area,
            procedure=procedure,
            statutory=complaint.statutory,
            channel=action.channel,
            customer_ref=action.customer_ref,
            contact_id=action.contact_id,
            matter_date=action.matter_date,
        ),
    )
    transition.start(1, "receipt")
    return transition.decision()


def acknowledge_complaint(t: Transition, action: AcknowledgeComplaint) -> None:
    t.require(Status.RECEIVED, Status.ESCALATION_REQUESTED)
    if t.complaint.status is Status.ESCALATION_REQUESTED:
        to_stage = t.complaint.stage + 1
        t.update(stage=to_stage)
        t.emit(ComplaintEscalated, ComplaintEscalatedPayload(**t.facts(), to_stage=to_stage))
    stage = t.complaint.stage
    t.meet(stage, DeadlineKind.ACKNOWLEDGE)
    t.update(status=Status.ACKNOWLEDGED)
    t.emit(ComplaintAcknowledged, ComplaintAcknowledgedPayload(**t.facts(), stage=stage))
    t.start(stage, "acknowledgement")


def respond_to_complaint(t: Transition, action: RespondToComplaint) -> None:
    t.require(Status.ACKNOWLEDGED)
    complaint = t.complaint
    if complaint.responders and same_person(complaint.responders[-1], action.responder):
        raise Refused(
            RefusalReason.SAME_RESPONDER,
            f"stage {complaint.stage} must be answered by someone other than the stage "
            f"{complaint.stage - 1} responder ({action.responder})",
        )
    stage = complaint.stage
    window = None
    if stage < complaint.rules.final_stage:
        rule = t.context.policy.window_for(complaint.rules)
        window = EscalationWindow(
            stage=stage,
            counted_from=t.day,
            working_days=rule.working_days,
            months=rule.months,
            statutory_days=complaint.rules.statutory_days,
            ends=t.day,
        )
        window = window.model_copy(update={"ends": window.ends_on(t.context.calendar)})
    learning = tuple(
        a.model_copy(update={"learning_action_id": a.learning_action_id or f"{stage}.{n}"})
        for n, a in enumerate(action.learning_actions, start=1)
    )
    t.meet(stage, DeadlineKind.RESPOND)
    t.update(
        status=Status.RESPONDED,
        responders=(*complaint.responders, action.responder),
        outcome=action.outcome,
        escalation_window=window,
        learning_actions=(*t.complaint.learning_actions, *map(_tracked(stage), learning)),
    )
    t.emit(
        ComplaintResponded,
        ComplaintRespondedPayload(
            **t.facts(),
            stage=stage,
            outcome=action.outcome,
            responder=action.responder,
            learning_actions=learning,
        ),
    )


def _tracked(stage: int) -> Callable[[LearningAction], TrackedLearningAction]:
    def tracked(action: LearningAction) -> TrackedLearningAction:
        return TrackedLearningAction(
            learning_action_id=action.learning_action_id or "",
            stage=stage,
            description=action.description,
            owner_team=action.owner_team,
            due_date=action.due_date,
        )

    return tracked


def request_escalation(t: Transition, action: RequestEscalation) -> None:
    t.require(Status.RESPONDED, Status.CLOSED)
    complaint = t.complaint
    if complaint.stage >= complaint.rules.final_stage:
        raise Refused(
            RefusalReason.FINAL_STAGE,
            f"stage {complaint.stage} is the last stage of the {complaint.procedure.value} "
            "procedure; the customer may go to the Ombudsman",
        )
    window = complaint.escalation_window
    # Judged on the request's date: a request dated inside the window reopens a case
    # closed by hand, or by the lapse timer if the request arrived after it fired.
    if window is None or window.used or t.day > window.ends:
        ended = "" if window is None else f" closed on {window.ends.isoformat()}"
        raise Refused(
            RefusalReason.ESCALATION_WINDOW_CLOSED,
            f"the window to ask for stage {complaint.stage + 1}{ended}",
        )
    t.use_window()
    t.update(status=Status.ESCALATION_REQUESTED)
    t.emit(
        ComplaintEscalationRequested,
        ComplaintEscalationRequestedPayload(**t.facts(), from_stage=complaint.stage),
    )
    t.start(complaint.stage + 1, "request")


def refuse_escalation(t: Transition, action: RefuseEscalation) -> None:
    t.require(Status.RESPONDED, Status.ESCALATION_REQUESTED, Status.CLOSED)
    complaint = t.complaint
    window = complaint.escalation_window
    if complaint.status is not Status.ESCALATION_REQUESTED and (window is None or window.used):
        raise Refused(RefusalReason.WRONG_STATE, "there is no escalation to refuse")
    t.cancel_pending()
    t.use_window()
    t.update(status=Status.CLOSED, refused=action.reason.value)
    t.emit(
        ComplaintEscalationRefused,
        ComplaintEscalationRefusedPayload(
            **t.facts(),
            stage=complaint.stage,
            reason=action.reason,
            detail_recorded=action.detail is not None,
        ),
    )
    t.emit(
        ComplaintClosed,
        ComplaintClosedPayload(
            **t.facts(),
            final_stage=complaint.stage,
            closed_because=CloseReason.ESCALATION_REFUSED,
            reason_recorded=True,  # the refusal's reason (and detail) stay with the case
        ),
    )


def withdraw_complaint(t: Transition, action: WithdrawComplaint) -> None:
    t.require(Status.RECEIVED, Status.ACKNOWLEDGED, Status.RESPONDED, Status.ESCALATION_REQUESTED)
    t.cancel_pending()
    t.use_window()
    t.update(status=Status.WITHDRAWN)
    t.emit(
        ComplaintWithdrawn,
        ComplaintWithdrawnPayload(
            **t.facts(), stage=t.complaint.stage, reason_recorded=action.reason is not None
        ),
    )


def close_complaint(t: Transition, action: CloseComplaint) -> None:
    complaint = t.complaint
    if complaint.status is Status.CLOSED:
        raise Refused(RefusalReason.WRONG_STATE, "the complaint is already closed")
    window_ends = complaint.escalation_window_ends
    window_open = (
        complaint.status is Status.RESPONDED and window_ends is not None and t.day <= window_ends
    )
    lapsed = complaint.status is Status.RESPONDED and window_ends is not None and not window_open
    if (complaint.status in UNANSWERED or window_open) and action.reason is None:
        raise Refused(
            RefusalReason.REASON_REQUIRED,
            f"closing a complaint that is {complaint.status.value} "
            + ("refuses it" if complaint.status in UNANSWERED else "inside its escalation window")
            + ": give the reason",
        )
    because = CloseReason.RESOLVED
    if complaint.status is Status.ESCALATION_REQUESTED:
        because = CloseReason.ESCALATION_REFUSED
    elif complaint.status in UNANSWERED:
        because = CloseReason.REFUSED
    elif window_open:
        because = CloseReason.OFFICER_CLOSED  # the customer may still escalate in the window
    elif lapsed:  # dated after the window ended: the close its timer would have made
        because = CloseReason.ESCALATION_WINDOW_LAPSED
        window = complaint.escalation_window
        if window is not None:
            t.update(escalation_window=window.model_copy(update={"lapsed": True}))
    t.cancel_pending()
    if because in (CloseReason.REFUSED, CloseReason.ESCALATION_REFUSED):
        t.update(refused=action.reason)
    t.update(status=Status.CLOSED)
    t.emit(
        ComplaintClosed,
        ComplaintClosedPayload(
            **t.facts(),
            final_stage=complaint.stage,
            closed_because=because,
            reason_recorded=action.reason is not None,
        ),
    )


def _unreachable(t: Transition, action: Action) -> None:  # `decide` opens complaints itself
    raise AssertionError(f"unexpected action {action!r}")


Transitioner = Callable[[Transition, Any], None]
TRANSITIONS: dict[type[Any], Transitioner] = {
    OpenComplaint: _unreachable,
    AcknowledgeComplaint: acknowledge_complaint,
    RespondToComplaint: respond_to_complaint,
    RequestEscalation: request_escalation,
    RefuseEscalation: refuse_escalation,
    ExtendDeadline: extend_deadline,
    RecordPanelMeeting: record_panel_meeting,
    RecordPanelReport: record_panel_report,
    ReferToOmbudsman: refer_to_ombudsman,
    RecordOmbudsmanDecision: record_ombudsman_decision,
    CompleteLearningAction: complete_learning_action,
    WithdrawComplaint: withdraw_complaint,
    CloseComplaint: close_complaint,
}
