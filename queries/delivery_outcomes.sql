-- Decisions per campaign between two UTC dates, inclusive: messages sent, and messages not
-- sent by reason (a NULL reason is the `sent` row). Each send id counts once.
-- Parameters: $start (DATE), $end (DATE), $campaign_id (VARCHAR or NULL for every campaign).
SELECT campaign_id, outcome, reason, count(*) AS messages, count(DISTINCT user_key) AS users
FROM deliveries
WHERE date BETWEEN $start AND $end
  AND ($campaign_id IS NULL OR campaign_id = $campaign_id)
GROUP BY campaign_id, outcome, reason
ORDER BY campaign_id, outcome DESC, messages DESC, reason;
