-- The views ds.sql() and ds.connect() set up over a grouped dataset.
-- examples: every row of every shard (the key column first, then the source's columns).
-- groups: the index, one row per group (group_id, shard, offset, num_rows, num_bytes,
--         num_words, and label_counts when labels were counted).
-- {{ shards }}: a query of every shard's rows (grouparrow/_scan.py: PyArrow scans that check
--     page CRCs, or DuckDB's read_parquet); {{ index }}: the index path;
-- {{ examples_filter }} / {{ groups_filter }}: empty, or the WHERE of a split view.
CREATE VIEW examples AS SELECT * FROM ({{ shards }}) {{ examples_filter }};
CREATE VIEW groups AS SELECT * FROM read_parquet({{ index }}) {{ groups_filter }};
