-- The counters summed across service areas, across channels, or both, per local day and
-- per calendar month, kept in each batch's transaction beside the daily counters (and
-- filled again by a rebuild, which applies batches the same way). A KPI read for every
-- area, one area or one channel then reads one row per measure per month (or day at a
-- span's ragged ends) instead of up to 90 cells' rows: a year is about 12 x 36 rows.
-- `breakdown` says which dimensions are kept; the others hold '*' (all). It leads the
-- key, then grain and start, so each read is one contiguous index range.
CREATE TABLE metrics_rollups (
    generation   integer          NOT NULL,
    breakdown    text             NOT NULL CHECK (breakdown IN ('all', 'service_area', 'channel')),
    grain        text             NOT NULL CHECK (grain IN ('day', 'month')),
    start        date             NOT NULL, -- the day, or the month's first day
    service_area text             NOT NULL, -- '*' unless breakdown = 'service_area'
    channel      text             NOT NULL, -- '*' unless breakdown = 'channel'
    measure      text             NOT NULL,
    value        double precision NOT NULL,
    PRIMARY KEY (generation, breakdown, grain, start, service_area, channel, measure)
);
INSERT INTO metrics_rollups
    (generation, breakdown, grain, start, service_area, channel, measure, value)
SELECT generation,
       CASE WHEN grouping(service_area) = 0 THEN 'service_area'
            WHEN grouping(channel) = 0 THEN 'channel' ELSE 'all' END,
       grain, start, coalesce(service_area, '*'), coalesce(channel, '*'), measure, sum(value)
FROM (
    SELECT generation, 'day' AS grain, day AS start, service_area, channel, measure, value
    FROM metrics_aggregates
    UNION ALL
    SELECT generation, 'month', month, service_area, channel, measure, value
    FROM metrics_monthly
) AS cells
GROUP BY GROUPING SETS (
    (generation, grain, start, measure),
    (generation, grain, start, measure, service_area),
    (generation, grain, start, measure, channel)
);

-- A read filtered by both service area and channel reads the cell's monthly rows: one
-- index range per cell, not every cell's rows of those months. Updates change only
-- `value`, which this index leaves out.
CREATE INDEX metrics_monthly_cell ON metrics_monthly (generation, service_area, channel, month);

-- The complaints open now, which every KPI read counts: the open ones only, so the count
-- stays small however many closed complaints five years of history hold.
CREATE INDEX metrics_complaint_facts_open
    ON metrics_complaint_facts (generation, service_area, channel) WHERE open;
