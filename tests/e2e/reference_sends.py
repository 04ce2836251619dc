"""Predict the sends of the three example campaigns straight from the reference CSV.

The prediction is plain DuckDB SQL over the CSV and imports nothing from Herald's
`domain`, `streams` or `schemas` packages, so the engine can be checked against it.
Timestamps in the CSV are naive `YYYY-MM-DD HH:MM:SS` values read as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb

# Explicit types keep DuckDB from guessing, and TIMESTAMP (not TIMESTAMPTZ) keeps the
# session time zone out of date arithmetic. Compression follows the file name (.gz or not).
LOAD_EVENTS_SQL = """
CREATE TABLE events AS
SELECT *
FROM read_csv(
    ?,
    header = true,
    delim = ',',
    quote = '"',
    timestampformat = '%Y-%m-%d %H:%M:%S',
    columns = {
        'user_id': 'VARCHAR',
        'session_id': 'VARCHAR',
        'event': 'VARCHAR',
        'timestamp': 'TIMESTAMP',
        'platform': 'VARCHAR',
        'acquisition_channel': 'VARCHAR',
        'user_cohort': 'VARCHAR',
        'user_lifecycle': 'VARCHAR'
    }
)
"""

# A purchase anywhere in [added_at, added_at + 1 hour], both ends included, cancels the
# cart. Each remaining cart row, duplicates included, is a candidate at added_at + 1 hour.
# The rolling cap depends on the last message actually sent, so the recursive CTE walks
# each user's candidates in time order. A candidate is sent when it is at least 24 hours
# after last_sent_at, and a blocked candidate leaves last_sent_at unchanged.
ABANDONED_CART_SQL = """
WITH RECURSIVE
candidates AS (
    SELECT
        cart.user_id,
        cart.timestamp + INTERVAL 1 HOUR AS send_at,
        row_number() OVER (PARTITION BY cart.user_id ORDER BY cart.timestamp) AS position
    FROM events AS cart
    WHERE cart.event = 'add_to_cart'
      AND NOT EXISTS (
          SELECT 1
          FROM events AS purchase
          WHERE purchase.event = 'purchase'
            AND purchase.user_id = cart.user_id
            AND purchase.timestamp BETWEEN cart.timestamp AND cart.timestamp + INTERVAL 1 HOUR
      )
),
decisions (user_id, position, send_at, is_sent, last_sent_at) AS (
    SELECT user_id, position, send_at, true, send_at
    FROM candidates
    WHERE position = 1

    UNION ALL

    SELECT
        next.user_id,
        next.position,
        next.send_at,
        next.send_at >= previous.last_sent_at + INTERVAL 24 HOUR,
        CASE
            WHEN next.send_at >= previous.last_sent_at + INTERVAL 24 HOUR THEN next.send_at
            ELSE previous.last_sent_at
        END
    FROM decisions AS previous
    JOIN candidates AS next
      ON next.user_id = previous.user_id
     AND next.position = previous.position + 1
)
SELECT user_id, send_at
FROM decisions
WHERE is_sent
"""

# The first payment_error of each user and UTC calendar day is sent.
PAYMENT_PROBLEM_SQL = """
SELECT user_id, min(timestamp) AS send_at
FROM events
WHERE event = 'payment_error'
GROUP BY user_id, CAST(timestamp AS DATE)
"""

# user_lifecycle is the user's state at that row, so only home rows seen while the user
# is new qualify. Grouping by user sends once ever, even when rows tie at the first second.
WELCOME_SQL = """
SELECT user_id, min(timestamp) AS send_at
FROM events
WHERE event = 'home'
  AND user_lifecycle = 'new'
GROUP BY user_id
"""

CAMPAIGN_SQL = {
    "Abandoned cart": ABANDONED_CART_SQL,
    "Payment problem": PAYMENT_PROBLEM_SQL,
    "Welcome": WELCOME_SQL,
}


def predicted_sends(csv_path: Path) -> dict[str, list[tuple[str, datetime]]]:
    """Map campaign name -> sorted list of (user_id, send time as aware UTC datetime)."""
    connection = duckdb.connect()
    try:
        connection.execute(LOAD_EVENTS_SQL, [str(csv_path)])
        sends = {}
        for campaign, sql in CAMPAIGN_SQL.items():
            rows = connection.execute(sql).fetchall()
            sends[campaign] = sorted(
                (user_id, send_at.replace(tzinfo=UTC)) for user_id, send_at in rows
            )
        return sends
    finally:
        connection.close()
