-- Users whose date trait has its anniversary on $target: the same month and day, in a year
-- up to $target's. A 29 February date counts on 28 February in other years. The trait is
-- read from its first ten characters, so `1990-05-17` and `1990-05-17T00:00:00Z` both work.
-- Parameters: $property (VARCHAR), $target (DATE).
WITH dates AS (
    SELECT
        coalesce(user_id, anonymous_id) AS user_id,
        TRY_CAST(left(traits->>$property, 10) AS DATE) AS day
    FROM profiles
)
SELECT user_id
FROM dates
WHERE day IS NOT NULL
  AND day <= $target
  AND (
      strftime(day, '%m-%d') = strftime($target, '%m-%d')
      OR (
          strftime(day, '%m-%d') = '02-29'
          AND strftime($target, '%m-%d') = '02-28'
          AND NOT (
              year($target) % 4 = 0 AND (year($target) % 100 <> 0 OR year($target) % 400 = 0)
          )
      )
  )
ORDER BY user_id;
