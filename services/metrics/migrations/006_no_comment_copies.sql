-- Survey comments are kept by the feedback service alone (SatisfactionResponded
-- version 2 carries a `comment_ref`, not the text), so that a customer's erasure
-- deletes them; the dashboard reads them from feedback's GET /v1/comments. The
-- copies metrics kept go with their table.
DROP TABLE metrics_survey_comments;
