-- Track events per name between two UTC dates, inclusive: how many, and by how many users.
-- Parameters: $start (DATE), $end (DATE), $event (VARCHAR or NULL for every name).
SELECT event, count(*) AS events, count(DISTINCT user_id) AS users
FROM tracks
WHERE date BETWEEN $start AND $end
  AND ($event IS NULL OR event = $event)
GROUP BY event
ORDER BY events DESC, event;
