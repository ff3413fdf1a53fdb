-- ga.group_counts: per-group sums of the rows' statistics, groups sorted by key.
-- __ga_rows streams (key, __ga_label, __ga_bytes, __ga_words), one row per source row.
-- {{ key }}: the key column; {{ labels }}: the label counts' aggregate, or a NULL column.
SELECT
    {{ key }},
    sum(__ga_n) AS num_rows,
    sum(__ga_bytes) AS num_bytes,
    sum(__ga_words) AS num_words,
    {{ labels }}
FROM (
    SELECT
        {{ key }},
        __ga_label,
        count(*) AS __ga_n,
        sum(__ga_bytes) AS __ga_bytes,
        sum(__ga_words) AS __ga_words
    FROM __ga_rows
    GROUP BY ALL
) AS __ga_pairs
GROUP BY {{ key }}
ORDER BY {{ key }}
