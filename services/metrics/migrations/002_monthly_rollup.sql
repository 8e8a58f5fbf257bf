-- The same counters summed per calendar month, kept in the same transaction as
-- the daily ones: a year's KPIs read about 12 rows per cell instead of 365.
CREATE TABLE metrics_monthly (
    generation   integer          NOT NULL,
    month        date             NOT NULL, -- the month's first day
    measure      text             NOT NULL,
    service_area text             NOT NULL,
    channel      text             NOT NULL,
    value        double precision NOT NULL,
    PRIMARY KEY (generation, month, measure, service_area, channel)
);
INSERT INTO metrics_monthly (generation, month, measure, service_area, channel, value)
SELECT generation, date_trunc('month', day)::date, measure, service_area, channel, sum(value)
FROM metrics_aggregates
GROUP BY 1, 2, 3, 4, 5;
