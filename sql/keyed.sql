-- Every source row with its key, placement and input position: the rows the map step
-- partitions (and the reduce step sorts directly when there is a single shard).
-- {{ key }}: the key expression over the source columns (a column, SQL, or a key UDF).
-- {{ key_check }}: the key, or error() naming the row whose key is null.
-- {{ key_hash }}: ga_hash_text / ga_hash_blob of the key column.
-- {{ exclude }}: __ga_key, and the source's column of the key's name when the key is it.
-- {{ where }}: empty, or the filter that drops rows whose key is null.
-- Bound: $seed, $num_shards.
SELECT
    ga_shard(__ga_h, $num_shards) AS __ga_shard,
    ga_order(__ga_h) AS __ga_order,
    ga_order_low(__ga_h) AS __ga_order_low,
    * EXCLUDE (__ga_h)
FROM (
    SELECT {{ key_hash }} AS __ga_h, *
    FROM (
        SELECT {{ key_check }} AS {{ key_column }}, * EXCLUDE ({{ exclude }})
        FROM (SELECT {{ key }} AS __ga_key, * FROM __ga_source) AS __ga_src
        {{ where }}
    ) AS __ga_checked
) AS __ga_hashed
