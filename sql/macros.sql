-- Macros grouparrow installs on every connection it opens; users may call them too.
--
-- A group's place is decided by one 128-bit hash of the build seed and the key:
--   h = md5_number(<seed as decimal text> || ':' || <key bytes>)
-- where a string key contributes its UTF-8 bytes, an integer key its decimal text and a
-- binary key its raw bytes. md5_number reads the digest as a little-endian integer, so
-- Python computes the same value with int.from_bytes(md5(...).digest(), "little").
-- shard = (low 64 bits of h) % num_shards; within a shard groups are ordered by h, as
-- (high 64 bits, low 64 bits). (64-bit arithmetic: a 128-bit modulo costs ~1 s per million
-- rows; and Parquet has no 128-bit integers.)
CREATE OR REPLACE MACRO ga_hash_text(key_text, seed) AS
    md5_number(CAST(seed AS VARCHAR) || ':' || key_text);

CREATE OR REPLACE MACRO ga_hash_blob(key_blob, seed) AS
    md5_number(encode(CAST(seed AS VARCHAR) || ':') || key_blob);

CREATE OR REPLACE MACRO ga_shard(h, num_shards) AS
    CAST(
        CAST(h & 18446744073709551615::UHUGEINT AS UBIGINT) % CAST(num_shards AS UBIGINT)
        AS INTEGER
    );

CREATE OR REPLACE MACRO ga_order(h) AS
    CAST(h >> 64 AS UBIGINT);

CREATE OR REPLACE MACRO ga_order_low(h) AS
    CAST(h & 18446744073709551615::UHUGEINT AS UBIGINT);
