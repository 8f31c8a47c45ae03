-- Keep planner statistics and hot rows healthy under a posting-heavy load.
--
-- Every capture updates the same few account rows (DOKU clearing, commission, fees): leave room on
-- their pages for HOT updates and vacuum them often. The trigger lookups on postings and journal
-- entries are planned from statistics; re-analyze them as they grow instead of waiting for 10 %
-- growth, so a young, fast-growing ledger does not run on plans made for empty tables.
ALTER TABLE accounts SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.0,
                          autovacuum_vacuum_threshold = 1000, autovacuum_analyze_threshold = 50);
ALTER TABLE postings SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
ALTER TABLE journal_entries SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
ALTER TABLE orders SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
