"""The segment SQL compiler on real landed Parquet: events and a profile snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from domain.profiles import apply_event as apply_profile_event
from domain.profiles import new_profile
from queries.catalog import connect
from queries.segments import (
    compile_segment,
    count_members,
    export_members,
    quote_identifier,
    segment_members,
)
from schemas.envelope import ENVELOPE_FIELDS, format_timestamp
from schemas.segment_rules import parse_segment_rule
from schemas.wire import partition_key
from sinks.files import write_parquet_atomically
from sinks.parquet import LandedRow, event_tables_by_date
from streams.profiles import PROFILES_SCHEMA

NOW = datetime(2024, 3, 10, 16, 0, tzinfo=UTC)  # noon in New York, on the DST day
_MESSAGE_IDS = count()


def make_envelope(
    at: datetime,
    *,
    user_id: str | None = "u1",
    anonymous_id: str | None = None,
    event: str | None = None,
    traits: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Build a stored envelope: a track event when `event` is given, else an identify call."""
    envelope: dict[str, Any] = dict.fromkeys(ENVELOPE_FIELDS)
    envelope.update(
        message_id=f"m{next(_MESSAGE_IDS)}",
        type="track" if event else "identify",
        event=event,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=format_timestamp(at),
        received_at=format_timestamp(at),
        properties=fields.pop("properties", {}),
        traits=traits or {},
        context={},
    )
    envelope.update(fields)
    return envelope


def build_profiles(envelopes: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fold events into profiles the way the profiles agent does, keyed by partition key."""
    profiles: dict[str, dict[str, Any]] = {}
    for envelope in envelopes:
        key = partition_key(envelope)
        profile = profiles.get(key) or new_profile(envelope, 0)
        profiles[key] = apply_profile_event(profile, envelope)
    return profiles


def land(data_dir: Path, envelopes: list[dict[str, Any]]) -> None:
    """Land events as the Parquet sink does and write the profile snapshot of their users."""
    rows = [LandedRow(envelope, offset, 0) for offset, envelope in enumerate(envelopes)]
    last = max(len(rows) - 1, 0)
    for day, table in event_tables_by_date(rows, 0).items():
        path = data_dir / "events" / f"date={day}" / f"part-0-0-{last}.parquet"
        write_parquet_atomically(table, path)
    profiles = list(build_profiles(envelopes).values())
    if profiles:
        write_parquet_atomically(
            _profiles_table(profiles), data_dir / "profiles" / "part-0.parquet"
        )


def _profiles_table(profiles: list[dict[str, Any]]) -> pa.Table:
    def times(name: str) -> pa.Array:
        texts = pa.array([profile[name] for profile in profiles], pa.string())
        return texts.cast(pa.timestamp("us", tz="UTC"))

    columns = [
        pa.array([profile["user_id"] for profile in profiles], pa.string()),
        pa.array([profile["anonymous_id"] for profile in profiles], pa.string()),
        pa.array([orjson.dumps(profile["traits"]).decode() for profile in profiles], pa.string()),
        times("first_seen"),
        times("last_seen"),
        times("traits_updated_at"),
        pa.array([0] * len(profiles), pa.int32()),
    ]
    return pa.table(columns, schema=PROFILES_SCHEMA)


def _members(data_dir: Path, definition: dict[str, Any], tz: str = "America/New_York") -> list[str]:
    with connect(data_dir) as connection:
        return segment_members(connection, parse_segment_rule(definition), now=NOW, tz=tz)


def _last_days(days: int) -> dict[str, Any]:
    return {"type": "last_days", "days": days}


@pytest.fixture
def landed(tmp_path: Path) -> Path:
    """Land a small history: three users, purchases, messages and traits."""
    events = [
        make_envelope(NOW - timedelta(days=40), traits={"plan": "pro", "email": "a@x.io"}),
        make_envelope(NOW - timedelta(hours=1), event="Charged", properties={"Amount": 120}),
        make_envelope(NOW - timedelta(days=2), event="Charged", properties={"Amount": 5}),
        make_envelope(NOW + timedelta(hours=1), event="Charged", properties={"Amount": 500}),
        make_envelope(
            NOW - timedelta(days=1),
            user_id="u2",
            traits={"plan": "free", "MSG-email": False, "email": "b@x.io", "age": 42},
        ),
        make_envelope(
            NOW - timedelta(days=3),
            user_id="u2",
            event="Notification Sent",
            campaign_id="c1",
            labels=["Onboarding"],
        ),
        make_envelope(NOW - timedelta(days=100), user_id=None, anonymous_id="a3", event="Charged"),
    ]
    land(tmp_path, events)
    return tmp_path


def test_trait_equals(landed: Path) -> None:
    assert _members(landed, {"type": "trait", "trait": "plan", "op": "eq", "value": "pro"}) == [
        "u1"
    ]


def test_trait_number_not_string(landed: Path) -> None:
    assert _members(landed, {"type": "trait", "trait": "age", "op": "eq", "value": 42.0}) == ["u2"]
    assert _members(landed, {"type": "trait", "trait": "age", "op": "eq", "value": "42"}) == []
    assert _members(landed, {"type": "trait", "trait": "plan", "op": "gt", "value": 1}) == []


def test_event_filter_and_window(landed: Path) -> None:
    rule = {
        "type": "event",
        "event": "Charged",
        "filters": [{"property": "Amount", "op": "gte", "value": 100}],
        "window": _last_days(1),
    }
    # The 500 purchase is an hour after `now`, so only the 120 one counts.
    assert _members(landed, rule) == ["u1"]


def test_event_count_since_first_seen(landed: Path) -> None:
    rule = {
        "type": "event",
        "event": "Charged",
        "count": {"op": "exactly", "value": 2},
        "window": {"type": "since_first_seen"},
    }
    assert _members(landed, rule) == ["u1"]


def test_did_not_includes_users_without_events(landed: Path) -> None:
    rule = {"type": "event", "event": "Charged", "did": False, "window": _last_days(90)}
    # The anonymous user's purchase is 100 days old, outside every day window.
    assert _members(landed, rule) == ["a3", "u2"]


def test_message_by_label(landed: Path) -> None:
    # Sent on 7 March, local time; today is 10 March, so the last 4 days include it.
    rule = {"type": "message", "action": "sent", "label": "Onboarding", "window": _last_days(4)}
    assert _members(landed, rule) == ["u2"]
    rule["window"] = _last_days(3)
    assert _members(landed, rule) == []


def test_message_by_campaign(landed: Path) -> None:
    rule = {"type": "message", "action": "sent", "campaign_id": "c1", "window": _last_days(7)}
    assert _members(landed, rule) == ["u2"]


def test_reachability(landed: Path) -> None:
    reachable = {
        "type": "and",
        "rules": [
            {"type": "has_contact", "channel": "email"},
            {"type": "subscribed", "channel": "email"},
        ],
    }
    assert _members(landed, reachable) == ["u1"]


def test_not_is_complement(landed: Path) -> None:
    rule = {"type": "not", "rule": {"type": "trait", "trait": "plan", "op": "exists"}}
    assert _members(landed, rule) == ["a3"]


def test_count_and_export(landed: Path, tmp_path: Path) -> None:
    rule = parse_segment_rule({"type": "trait", "trait": "email", "op": "exists"})
    target = tmp_path / "export" / "members.parquet"
    with connect(landed) as connection:
        assert count_members(connection, rule, now=NOW, tz="UTC") == 2
        assert export_members(connection, rule, target, now=NOW, tz="UTC") == 2
    assert pq.read_table(target).column("user_id").to_pylist() == ["u1", "u2"]


def test_values_are_bound(landed: Path) -> None:
    hostile = "x'); DROP VIEW events; --"
    rule = parse_segment_rule({"type": "trait", "trait": "plan", "op": "eq", "value": hostile})
    query = compile_segment(rule, now=NOW, tz="UTC")
    assert hostile not in query.sql
    assert hostile in query.params.values()
    assert _members(landed, {"type": "trait", "trait": "plan", "op": "eq", "value": hostile}) == []


def test_quote_identifier_doubles_quotes() -> None:
    assert quote_identifier('a"b') == '"a""b"'


def test_naive_now_rejected() -> None:
    rule = parse_segment_rule({"type": "has_contact", "channel": "sms"})
    with pytest.raises(ValueError, match="timezone-aware"):
        compile_segment(rule, now=datetime(2024, 3, 10), tz="UTC")


def test_empty_data_dir(tmp_path: Path) -> None:
    assert _members(tmp_path, {"type": "subscribed", "channel": "push"}) == []
