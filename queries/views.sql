-- Views over the landed Parquet. `{events_source}` and `{profiles_source}` are replaced by
-- `read_parquet(...)` of the data directory (or an empty relation when nothing has landed).

-- events: every event ever accepted, once (copies of a message id are dropped at landing).
-- `timestamp` is when it happened and `received_at` when the API took it, both in UTC;
-- `date` is the UTC date of `timestamp`, the partition key of the files.
-- `properties`, `traits` and `context` are JSON: `properties->>'platform'`.
CREATE OR REPLACE VIEW events AS
SELECT
    message_id, type, event, name, user_id, anonymous_id, group_id, previous_id,
    timestamp, received_at,
    properties::JSON AS properties, traits::JSON AS traits, context::JSON AS context,
    campaign_id, variant, channel, labels,
    CAST(date AS DATE) AS date,
    _kafka_partition, _kafka_offset, _kafka_index
FROM {events_source};

-- tracks: the `track` events only, the ones with an event name.
CREATE OR REPLACE VIEW tracks AS
SELECT * FROM events WHERE type = 'track';

-- profiles: one row per user from the latest snapshot; `traits` merges every identify
-- call in event-time order, and `first_seen`/`last_seen` span all of the user's events.
CREATE OR REPLACE VIEW profiles AS
SELECT
    user_id, anonymous_id, traits::JSON AS traits,
    first_seen, last_seen, traits_updated_at
FROM {profiles_source};

-- deliveries: the engine's decisions, one row per send id. `outcome` is `sent` or
-- `not_sent`; `reason` is why not (unsubscribed, not_reachable, global_cap, campaign_cap,
-- quiet_hours, throttled, limit_per_run, limit_per_day, limit_overall, control_group,
-- account_control_group, render_failed, missed_local_time, cut_off, campaign_stopped,
-- left_audience, too_many_waiting).
-- `trigger_id` is the triggering event's message id; `run_id` names a scheduled run.
CREATE OR REPLACE VIEW deliveries AS
SELECT
    message_id AS send_id, campaign_id, variant, channel, labels,
    coalesce(user_id, anonymous_id) AS user_key, timestamp, date,
    CASE event WHEN 'Notification Sent' THEN 'sent' ELSE 'not_sent' END AS outcome,
    properties->>'reason' AS reason,
    properties->>'trigger_id' AS trigger_id,
    properties->>'run_id' AS run_id
FROM events
WHERE event IN ('Notification Sent', 'Notification Not Sent');
