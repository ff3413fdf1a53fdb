-- Per-group label counts of one shard file, groups in storage order (by their first row):
-- each group's labels that occur, sorted (a null label last), with their row counts.
-- {{ file }}: the shard's path; {{ key }}: the key column; {{ label }}: the label column.
SELECT
    {{ key }} AS group_id,
    list({'label': __ga_label, 'count': __ga_n} ORDER BY __ga_label NULLS LAST) AS label_counts
FROM (
    SELECT {{ key }}, {{ label }} AS __ga_label, count(*) AS __ga_n, min(file_row_number) AS __ga_first
    FROM read_parquet({{ file }}, file_row_number = true)
    GROUP BY ALL
) AS __ga_pairs
GROUP BY {{ key }}
ORDER BY min(__ga_first)
