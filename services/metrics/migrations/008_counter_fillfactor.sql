-- The counter tables are updated in place, each batch adding to thousands of rows.
-- With pages left 30% free, an update finds room on its row's own page and is a HOT
-- update (no new index entries, the old version pruned with the page): about 90% of
-- the bench's updates, against 50% (daily) and 14% (rollups) on full pages, whose
-- updates also grew the primary keys. Pages written from now on leave the room; older
-- ones keep theirs until the table is rewritten (VACUUM FULL), which is not needed.
ALTER TABLE metrics_aggregates SET (fillfactor = 70);
ALTER TABLE metrics_monthly SET (fillfactor = 70);
ALTER TABLE metrics_rollups SET (fillfactor = 70);
