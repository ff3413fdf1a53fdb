-- The labels view (when the index holds label counts): one row per group and label that
-- occurs in it, (group_id, label, count); the long form the ga_label_skew macro reads.
CREATE VIEW labels AS
SELECT group_id, unnest(label_counts, recursive := true)
FROM groups;
