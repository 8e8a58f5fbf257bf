-- Officers' reasons (an extension's reason, a refused escalation's detail) stay with
-- the case in the complaints service, erasable with the customer: the events no longer
-- carry them (ComplaintDeadlineExtended v2, ComplaintEscalationRefused v2). The copies
-- the annual report's notes kept go; the report lists extensions without the text.
UPDATE metrics_complaint_notes SET detail = detail - 'reason'
WHERE kind = 'extension' AND detail ? 'reason';
UPDATE metrics_complaint_notes SET detail = detail - 'detail'
WHERE kind = 'escalation_refused' AND detail ? 'detail';
