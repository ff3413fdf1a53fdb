-- Statistics macros over a grouped dataset: group sizes, inequality, label entropy and label
-- skew (how far each group's label distribution is from the global one).
--
-- Load the whole file with one execute; every macro is CREATE OR REPLACE, so loading it twice
-- is fine. All results are DOUBLE. Counts may be any numeric type (integers or DOUBLE
-- probabilities); NULL entries inside a list count as 0. Logarithms are base 2 (bits).
-- Needs DuckDB >= 1.3 (the `lambda x: ...` syntax).
--
-- The scalar macros bind a per-row value once with list_transform([value], lambda s: ...)[1]:
-- a lambda evaluates an outer expression it mentions once per list ELEMENT, so writing
-- list_sum(counts) inside the element lambda would make the macro quadratic in the length.

-- ga_size_quantiles(n): AGGREGATE. The distribution of a numeric column (e.g. num_rows of
-- the groups view) as STRUCT(min, p10, p25, median, mean, p75, p90, p99, max), every field
-- DOUBLE. Quantiles are quantile_cont (linear interpolation between order statistics, as
-- numpy.quantile's default); the fields lie in [min(n), max(n)] and keep n's units.
-- NULL values are ignored; with no non-NULL values the result is a NULL struct.
-- Usage: SELECT ga_size_quantiles(num_rows) FROM groups
CREATE OR REPLACE MACRO ga_size_quantiles(n) AS
    CASE WHEN count(n) > 0 THEN
        struct_pack(
            min := CAST(min(n) AS DOUBLE),
            p10 := quantile_cont(CAST(n AS DOUBLE), [0.1, 0.25, 0.5, 0.75, 0.9, 0.99])[1],
            p25 := quantile_cont(CAST(n AS DOUBLE), [0.1, 0.25, 0.5, 0.75, 0.9, 0.99])[2],
            median := quantile_cont(CAST(n AS DOUBLE), [0.1, 0.25, 0.5, 0.75, 0.9, 0.99])[3],
            mean := avg(CAST(n AS DOUBLE)),
            p75 := quantile_cont(CAST(n AS DOUBLE), [0.1, 0.25, 0.5, 0.75, 0.9, 0.99])[4],
            p90 := quantile_cont(CAST(n AS DOUBLE), [0.1, 0.25, 0.5, 0.75, 0.9, 0.99])[5],
            p99 := quantile_cont(CAST(n AS DOUBLE), [0.1, 0.25, 0.5, 0.75, 0.9, 0.99])[6],
            max := CAST(max(n) AS DOUBLE)
        )
    END;

-- ga_gini(n): AGGREGATE. The Gini coefficient of the values (unitless): 0 when all are
-- equal, at most 1 - 1/k for k values (one value holds everything). Computed from the sorted
-- values x_(1) <= ... <= x_(k) as sum((2i - k - 1) * x_(i)) / (k * sum(x)), which equals
-- 2 * sum(i * x_(i)) / (k * sum(x)) - (k + 1) / k; tiny negative rounding is clamped to 0.
-- Values should be non-negative (not checked). NULL values are ignored; no non-NULL values
-- or a zero sum give NULL. Holds the column's values in memory (one list per group).
-- Usage: SELECT ga_gini(num_rows) FROM groups
CREATE OR REPLACE MACRO ga_gini(n) AS
    list_transform(
        [list_sort(list(CAST(n AS DOUBLE)) FILTER (WHERE n IS NOT NULL))],
        lambda xs: CASE WHEN list_sum(xs) <> 0 THEN
            greatest(
                0.0,
                list_sum(list_transform(xs, lambda x, i: (2 * i - len(xs) - 1) * x))
                    / (len(xs) * list_sum(xs))
            )
        END
    )[1];

-- ga_entropy(counts): SCALAR. The Shannon entropy, in bits, of the distribution
-- counts / sum(counts) for a LIST of non-negative numbers (counts or probabilities): in
-- [0, log2(number of non-zero entries)]. Zero (and NULL) entries contribute 0. An empty
-- list, a NULL list or a zero sum give NULL; a negative entry is an error.
-- Usage: SELECT ga_entropy([3, 1, 0])
CREATE OR REPLACE MACRO ga_entropy(counts) AS
    list_transform(
        [CAST(list_sum(counts) AS DOUBLE)],
        lambda total: CASE
            WHEN list_min(counts) < 0 THEN error('ga_entropy: the counts must be non-negative')
            WHEN total > 0 THEN
                greatest(
                    0.0,
                    list_sum(list_transform(counts, lambda c: CASE WHEN c > 0 THEN
                        -(c / total) * log2(c / total) ELSE 0.0 END))
                )
        END
    )[1];

-- ga_label_entropy(label_counts): SCALAR. ga_entropy of the counts of a label_counts column,
-- LIST(STRUCT(label, count)): the entropy in bits of the group's label distribution, in
-- [0, log2(number of labels present)]. Empty, NULL or all-zero label_counts give NULL.
-- Usage: SELECT group_id, ga_label_entropy(label_counts) FROM groups
CREATE OR REPLACE MACRO ga_label_entropy(label_counts) AS
    ga_entropy(list_transform(label_counts, lambda lc: lc['count']));

-- ga_js_distance(p, q): SCALAR. The Jensen-Shannon distance between two aligned LISTs of
-- non-negative numbers of the same length (entry i of both lists is the same outcome), each
-- normalised to sum 1 here: sqrt of the JS divergence with log base 2, in [0, 1]; 0 for
-- proportional lists, 1 for disjoint supports. Summed term by term,
-- a*log2(2a/(a+b)) + b*log2(2b/(a+b)), each term >= 0; the divergence is clamped to [0, 1].
-- NULL entries count as 0. A NULL or empty list, or a zero sum, gives NULL; lists of
-- different lengths or a negative entry are an error.
-- Usage: SELECT ga_js_distance([1, 2, 0], [0, 2, 1])
CREATE OR REPLACE MACRO ga_js_distance(p, q) AS
    list_transform(
        [struct_pack(sp := CAST(list_sum(p) AS DOUBLE), sq := CAST(list_sum(q) AS DOUBLE))],
        lambda s: CASE
            WHEN len(p) <> len(q) THEN error('ga_js_distance: p and q must have the same length')
            WHEN list_min(p) < 0 OR list_min(q) < 0 THEN
                error('ga_js_distance: the entries must be non-negative')
            WHEN s.sp > 0 AND s.sq > 0 THEN
                sqrt(least(1.0, greatest(0.0, 0.5 * list_sum(list_transform(
                    list_zip(p, q),
                    lambda z: list_transform(
                        [struct_pack(
                            a := coalesce(CAST(z[1] AS DOUBLE), 0.0) / s.sp,
                            b := coalesce(CAST(z[2] AS DOUBLE), 0.0) / s.sq
                        )],
                        lambda ab: CASE WHEN ab.a > 0 THEN
                                ab.a * log2(2 * ab.a / (ab.a + ab.b)) ELSE 0.0 END
                            + CASE WHEN ab.b > 0 THEN
                                ab.b * log2(2 * ab.b / (ab.a + ab.b)) ELSE 0.0 END
                    )[1]
                )))))
        END
    )[1];

-- ga_hellinger(p, q): SCALAR. The Hellinger distance between two aligned LISTs of
-- non-negative numbers of the same length, each normalised to sum 1 here:
-- sqrt(1 - sum(sqrt(p_i * q_i))), in [0, 1]; 0 for proportional lists, 1 for disjoint
-- supports. Computed as the equal sqrt(sum((sqrt(p_i) - sqrt(q_i))^2) / 2), which has no
-- cancellation near 0 (1 - sum(...) loses ~1e-8 after the sqrt); clamped to [0, 1].
-- NULL entries count as 0. A NULL or empty list, or a zero sum, gives NULL; lists of
-- different lengths or a negative entry are an error.
-- Usage: SELECT ga_hellinger([1, 2, 0], [0, 2, 1])
CREATE OR REPLACE MACRO ga_hellinger(p, q) AS
    list_transform(
        [struct_pack(sp := CAST(list_sum(p) AS DOUBLE), sq := CAST(list_sum(q) AS DOUBLE))],
        lambda s: CASE
            WHEN len(p) <> len(q) THEN error('ga_hellinger: p and q must have the same length')
            WHEN list_min(p) < 0 OR list_min(q) < 0 THEN
                error('ga_hellinger: the entries must be non-negative')
            WHEN s.sp > 0 AND s.sq > 0 THEN
                sqrt(least(1.0, 0.5 * list_sum(list_transform(
                    list_zip(p, q),
                    lambda z: pow(
                        sqrt(coalesce(CAST(z[1] AS DOUBLE), 0.0) / s.sp)
                            - sqrt(coalesce(CAST(z[2] AS DOUBLE), 0.0) / s.sq),
                        2
                    )
                ))))
        END
    )[1];

-- ga_label_skew(t): TABLE. Per-group label skew from the NAME (a string) of a table or view
-- in long form with columns (group_id, label, count), such as the labels view. One row per
-- group, ordered by group_id:
--   group_id     as in t
--   num_rows     BIGINT, the sum of the group's counts
--   num_labels   BIGINT, the labels whose count in the group is > 0
--   entropy      DOUBLE, bits, in [0, log2(num_labels)]: the group's label distribution
--   js_distance  DOUBLE in [0, 1]: Jensen-Shannon distance (log base 2) between the group's
--                label distribution and the global one (counts summed over all groups)
--   hellinger    DOUBLE in [0, 1]: Hellinger distance between the same two distributions
-- Sparse-safe: a label with no row for a group counts 0 there (it still adds to the
-- distances through its global share); repeated (group_id, label) rows are summed; labels of
-- any type (NULL is a label like any other); NULL counts count 0. A group whose counts sum to
-- 0 (or when all counts are 0) gets NULL entropy and distances. Cost is linear in the rows
-- of t (hash aggregates and joins; no group x label grid).
-- Usage: SELECT * FROM ga_label_skew('labels')
CREATE OR REPLACE MACRO ga_label_skew(t) AS TABLE
    WITH ga_cells AS (
        SELECT group_id, label, coalesce(sum(CAST("count" AS DOUBLE)), 0.0) AS c
        FROM query_table(t)
        GROUP BY group_id, label
    ),
    ga_group_totals AS (
        SELECT group_id, sum(c) AS n FROM ga_cells GROUP BY group_id
    ),
    ga_label_totals AS (
        SELECT label, sum(c) AS c FROM ga_cells GROUP BY label
    ),
    ga_grand_total AS (
        SELECT sum(c) AS n FROM ga_label_totals
    ),
    ga_shares AS (
        SELECT
            cell.group_id,
            cell.label,
            cell.c,
            g.n,
            lab.c AS label_total,
            total.n AS grand_total,
            CASE WHEN g.n > 0 THEN cell.c / g.n END AS p,
            CASE WHEN total.n > 0 THEN lab.c / total.n END AS q
        FROM ga_cells AS cell
        JOIN ga_group_totals AS g ON g.group_id IS NOT DISTINCT FROM cell.group_id
        JOIN ga_label_totals AS lab ON lab.label IS NOT DISTINCT FROM cell.label
        CROSS JOIN ga_grand_total AS total
    ),
    ga_sums AS (
        SELECT
            group_id,
            any_value(n) AS n,
            count(*) FILTER (WHERE c > 0) AS num_labels,
            -- Inexact sums add their terms in label order (list_sum of an ordered list), not
            -- in the order parallel threads meet them: the same data gives the same bits.
            list_sum(list(CASE WHEN p > 0 THEN -p * log2(p) ELSE 0.0 END ORDER BY label))
                AS entropy,
            -- Terms of the labels with a row in the group. A label without one (p = 0) adds
            -- q * log2(2q / q) = q to the JS sum and (0 - sqrt(q))^2 = q to the Hellinger sum,
            -- so those labels add their global share together: `absent` below, taken from
            -- the counts (exact for integer counts) rather than as 1 - sum(q).
            list_sum(list(
                CASE WHEN p > 0 THEN p * log2(2 * p / (p + q)) ELSE 0.0 END
                + CASE WHEN q > 0 THEN q * log2(2 * q / (p + q)) ELSE 0.0 END
                ORDER BY label
            )) AS js_present,
            list_sum(list(pow(sqrt(p) - sqrt(q), 2) ORDER BY label)) AS hellinger_present,
            greatest(0.0, any_value(grand_total) - sum(label_total)) / any_value(grand_total)
                AS absent,
            bool_and(p IS NOT NULL AND q IS NOT NULL) AS defined
        FROM ga_shares
        GROUP BY group_id
    )
    SELECT
        group_id,
        CAST(n AS BIGINT) AS num_rows,
        num_labels,
        CASE WHEN defined THEN greatest(0.0, entropy) END AS entropy,
        CASE WHEN defined THEN sqrt(least(1.0, greatest(0.0, 0.5 * (js_present + absent)))) END
            AS js_distance,
        CASE WHEN defined THEN sqrt(least(1.0, 0.5 * (hellinger_present + absent))) END
            AS hellinger
    FROM ga_sums
    ORDER BY group_id;
