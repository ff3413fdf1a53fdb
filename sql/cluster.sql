-- The reduce step for one shard: its rows ordered so that each group's rows are contiguous,
-- groups in a seeded pseudo-random order (ga_order), rows of a group in input order.
-- {{ rows }}: the shard's rows (its map files, or the keyed source when there is one shard).
SELECT * EXCLUDE (__ga_shard, __ga_order, __ga_row)
FROM ({{ rows }}) AS __ga_rows
ORDER BY __ga_order, {{ key_column }}, __ga_row
