-- The map step: one streaming pass writes every keyed row to the Parquet files of its
-- shard, under {{ path }}/__ga_shard=<i>/. Bound: $seed, $num_shards.
COPY ({{ keyed }}) TO {{ path }} (
    FORMAT parquet,
    PARTITION_BY (__ga_shard),
    COMPRESSION zstd
)
