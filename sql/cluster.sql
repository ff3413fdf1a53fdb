-- The reduce step for one shard: its rows ordered so that each group's rows are contiguous,
-- groups in a seeded pseudo-random order (their 128-bit hash), rows of a group in input
-- order. Sorting by the hash rather than the key string is ~25 % faster; two keys with the
-- same 128-bit hash (an MD5 collision) would interleave, which the writer detects.
-- {{ rows }}: the shard's rows (its map files, or the keyed source when there is one shard).
SELECT * EXCLUDE (__ga_shard, __ga_order, __ga_order_low, __ga_row)
FROM ({{ rows }}) AS __ga_rows
ORDER BY __ga_order, __ga_order_low, __ga_row
