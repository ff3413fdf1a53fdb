-- The map step: one streaming pass writes every keyed row to the Parquet files of its
-- shard, under {{ path }}/__ga_shard=<i>/. Bound: $seed, $num_shards.
-- Row groups of at most 16 MB: DuckDB's default 122,880 rows buffers ~120 MB per partition
-- and thread with 1 KB rows, which ran out of memory under small budgets.
COPY ({{ keyed }}) TO {{ path }} (
    FORMAT parquet,
    PARTITION_BY (__ga_shard),
    COMPRESSION zstd,
    ROW_GROUP_SIZE_BYTES '16MB'
)
