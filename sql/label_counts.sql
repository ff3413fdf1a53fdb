-- Per-group label counts of one shard: each group's labels that occur, sorted (a null
-- label last), with their row counts; groups in no particular order (the caller aligns
-- them with the index).
-- {{ shard }}: the shard, a view or registered dataset (grouparrow/_scan.py: its page CRCs
-- are checked); {{ key }}: the key column; {{ label }}: the label column.
SELECT
    {{ key }} AS group_id,
    list({'label': __ga_label, 'count': __ga_n} ORDER BY __ga_label NULLS LAST) AS label_counts
FROM (
    SELECT {{ key }}, {{ label }} AS __ga_label, count(*) AS __ga_n
    FROM {{ shard }}
    GROUP BY ALL
) AS __ga_pairs
GROUP BY {{ key }}
