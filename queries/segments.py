"""Segment rules compiled to DuckDB SQL over the `events` and `profiles` views.

`compile_segment` turns a rule into one SELECT that returns the ids of the users who match
at `now` in the account time zone. It follows the semantics of `docs/segments.md` and must
agree with `domain.segments.SegmentEvaluator`. Every value, JSON path and time zone is a
bound named parameter (`$p0`, `$p1`…). The only identifiers the compiler writes are the
names of its own common table expressions, and they go through `quote_identifier`.

A user is identified by `coalesce(user_id, anonymous_id)`, the key events are partitioned
by, and the candidates are every user with a profile or an event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa

from domain.segments.evaluator import CONTACT_TRAITS, subscription_trait
from domain.segments.state import DEFAULT_HORIZON_DAYS, MESSAGE_EVENTS
from domain.segments.values import DATE_PATTERN, DATETIME_PATTERN, is_number
from schemas.envelope import format_timestamp
from schemas.segment_rules import (
    AndRule,
    BetweenDatesWindow,
    EventRule,
    HasContactRule,
    LastDaysWindow,
    MessageRule,
    NotRule,
    OrRule,
    SegmentRule,
    SubscribedRule,
    TraitDateRule,
    TraitRule,
    Window,
)
from sinks.files import write_parquet_atomically

__all__ = [
    "SegmentQuery",
    "compile_segment",
    "count_members",
    "export_members",
    "is_member",
    "quote_identifier",
    "segment_members",
]

_NUMBER_TYPES = "('BIGINT', 'UBIGINT', 'HUGEINT', 'DOUBLE')"
_ORDER_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_COUNT_SQL = {"at_least": ">=", "at_most": "<=", "exactly": "="}


def quote_identifier(name: str) -> str:
    """Quote `name` as a SQL identifier; the one place identifiers are built by hand."""
    return '"' + name.replace('"', '""') + '"'


def json_path(key: str) -> str:
    """Return the JSON path of a top-level key, bound as a parameter and never pasted."""
    # The rule schema rejects keys with a quote, a backslash or a control character.
    return '$."' + key + '"'


@dataclass(frozen=True, slots=True)
class SegmentQuery:
    """A compiled segment: SQL text with named parameters, returning one `user_id` column."""

    sql: str
    params: dict[str, Any]


@dataclass
class _Compiler:
    now: str
    tz: str
    today: date
    horizon_start: date
    account_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    counts: list[str] = field(default_factory=list)
    _shared: dict[str, str] = field(default_factory=dict)

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    def now_sql(self) -> str:
        # Bound once, on first use, and shared by every condition that compares with `now`.
        if "now" not in self._shared:
            self._shared["now"] = f"CAST({self.bind(self.now)} AS TIMESTAMPTZ)"
        return self._shared["now"]

    def tz_sql(self) -> str:
        if "tz" not in self._shared:
            self._shared["tz"] = self.bind(self.tz)
        return self._shared["tz"]


def compile_segment(
    rule: SegmentRule,
    *,
    now: datetime,
    tz: str,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    account_id: str | None = None,
) -> SegmentQuery:
    """Compile a rule into the query of its members at `now`, by days of time zone `tz`.

    With `account_id`, label conditions count only the Notification events of that
    account's campaigns.

    Raises:
        ValueError: `now` is naive.
    """
    if now.tzinfo is None:
        raise ValueError(f"`now` must be timezone-aware, got {now.isoformat()}")
    today = now.astimezone(ZoneInfo(tz)).date()
    horizon_start = date.fromordinal(today.toordinal() - horizon_days + 1)
    compiler = _Compiler(format_timestamp(now), tz, today, horizon_start, account_id)
    sql = _assemble(compiler, _rule_sql(compiler, rule))
    # DuckDB rejects unused parameters, and a test that is constant false drops its path.
    used = set(re.findall(r"\$(p[0-9]+)\b", sql))
    return SegmentQuery(
        sql, {name: value for name, value in compiler.params.items() if name in used}
    )


def _assemble(compiler: _Compiler, condition: str) -> str:
    ctes = [
        "users AS (SELECT user_key, any_value(traits) AS traits FROM ("
        " SELECT coalesce(user_id, anonymous_id) AS user_key, traits FROM profiles"
        " UNION ALL SELECT coalesce(user_id, anonymous_id), NULL::JSON FROM events"
        ") GROUP BY user_key)"
    ]
    joins = []
    for index, body in enumerate(compiler.counts):
        name = quote_identifier(f"count_{index}")
        ctes.append(f"{name} AS ({body})")
        joins.append(f"LEFT JOIN {name} ON {name}.user_key = u.user_key")
    return (
        "WITH "
        + ",\n".join(ctes)
        + "\nSELECT u.user_key AS user_id FROM users AS u\n"
        + "\n".join(joins)
        + f"\nWHERE {condition}\nORDER BY user_id"
    )


def _rule_sql(compiler: _Compiler, rule: SegmentRule) -> str:
    if isinstance(rule, (AndRule, OrRule)):
        joiner = " AND " if isinstance(rule, AndRule) else " OR "
        parts = [_rule_sql(compiler, child) for child in rule.rules]
        return "(" + joiner.join(parts) + ")"
    if isinstance(rule, NotRule):
        return f"(NOT {_rule_sql(compiler, rule.rule)})"
    if isinstance(rule, (EventRule, MessageRule)):
        return _behaviour_sql(compiler, rule)
    return _profile_sql(compiler, rule)


def _profile_sql(
    compiler: _Compiler,
    rule: TraitRule | TraitDateRule | HasContactRule | SubscribedRule,
) -> str:
    if isinstance(rule, TraitRule):
        return value_sql(compiler.bind, _trait(compiler, rule.trait), rule.op, rule.value)
    if isinstance(rule, TraitDateRule):
        return _trait_date_sql(compiler, rule)
    if isinstance(rule, HasContactRule):
        value = _trait(compiler, CONTACT_TRAITS[rule.channel])
        return f"coalesce(json_type({value}) = 'VARCHAR' AND ({value} ->> '$') <> '', false)"
    value = _trait(compiler, subscription_trait(rule.channel))
    # As delivery decides: false, or the text "false" in any case, unsubscribes.
    unsubscribed = (
        f"(json_type({value}) = 'BOOLEAN' AND NOT TRY_CAST({value} AS BOOLEAN))"
        f" OR (json_type({value}) = 'VARCHAR' AND lower(trim({value} ->> '$')) = 'false')"
    )
    return f"(NOT coalesce({unsubscribed}, false))"


def _trait(compiler: _Compiler, name: str) -> str:
    return f"json_extract(u.traits, {compiler.bind(json_path(name))})"


def _trait_date_sql(compiler: _Compiler, rule: TraitDateRule) -> str:
    value = _trait(compiler, rule.trait)
    text = f"({value} ->> '$')"
    day = (
        f"CASE WHEN json_type({value}) <> 'VARCHAR' THEN NULL"
        f" WHEN regexp_full_match({text}, {compiler.bind(DATE_PATTERN)}) THEN TRY_CAST({text} AS DATE)"
        f" WHEN regexp_full_match({text}, {compiler.bind(DATETIME_PATTERN)})"
        f" THEN CAST(timezone({compiler.tz_sql()}, TRY_CAST({text} AS TIMESTAMPTZ)) AS DATE) END"
    )
    today, days = compiler.today.toordinal(), rule.days
    low, high = {
        "in_last_days": (today - days + 1, today),
        "in_next_days": (today, today + days - 1),
        "days_from_now": (today + days, today + days),
    }[rule.op]
    low_param = compiler.bind(date.fromordinal(low))
    high_param = compiler.bind(date.fromordinal(high))
    return f"coalesce(({day}) BETWEEN {low_param} AND {high_param}, false)"


def _behaviour_sql(compiler: _Compiler, rule: EventRule | MessageRule) -> str:
    conditions = ["type = 'track'", f"timestamp <= {compiler.now_sql()}"]
    if isinstance(rule, MessageRule):
        conditions.append(f"event = {compiler.bind(MESSAGE_EVENTS[rule.action])}")
        if rule.campaign_id is not None:
            conditions.append(f"campaign_id = {compiler.bind(rule.campaign_id)}")
        if rule.label is not None:
            conditions.append(
                f"coalesce(list_contains(labels, {compiler.bind(rule.label)}), false)"
            )
            if compiler.account_id is not None:
                account = compiler.bind(compiler.account_id)
                # Typed like the streaming side's comparison: the text "12" is not 12.
                owner = "json_extract(properties, '$.account_id')"
                conditions.append(
                    f"coalesce(json_type({owner}) = 'VARCHAR'"
                    f" AND ({owner} ->> '$') = {account}, false)"
                )
    else:
        conditions.append(f"event = {compiler.bind(rule.event)}")
        for item in rule.filters:
            value = f"json_extract(properties, {compiler.bind(json_path(item.property))})"
            conditions.append(value_sql(compiler.bind, value, item.op, item.value))
    days = _window_sql(compiler, rule.window)
    if days:
        conditions.append(days)
    compiler.counts.append(
        "SELECT coalesce(user_id, anonymous_id) AS user_key, count(*) AS n FROM events WHERE "
        + " AND ".join(conditions)
        + " GROUP BY 1"
    )
    name = quote_identifier(f"count_{len(compiler.counts) - 1}")
    test = f"coalesce({name}.n, 0) {_COUNT_SQL[rule.count.op]} {compiler.bind(rule.count.value)}"
    return f"({test})" if rule.did else f"(NOT ({test}))"


def _window_sql(compiler: _Compiler, window: Window) -> str | None:
    """Return the clipped local day range of a window; since first seen has none."""
    if isinstance(window, LastDaysWindow):
        low = date.fromordinal(compiler.today.toordinal() - window.days + 1)
        high = compiler.today
    elif isinstance(window, BetweenDatesWindow):
        low, high = window.start, min(window.end, compiler.today)
    else:
        return None
    low = max(low, compiler.horizon_start)
    local_day = f"CAST(timezone({compiler.tz_sql()}, timestamp) AS DATE)"
    return f"{local_day} BETWEEN {compiler.bind(low)} AND {compiler.bind(high)}"


def value_sql(bind: Any, value: str, op: str, operand: Any) -> str:
    """Return a never-NULL SQL test of the JSON expression `value`, by the type rules."""
    present = f"coalesce(json_type({value}) <> 'NULL', false)"
    if op == "exists":
        return present
    if op == "not_exists":
        return f"(NOT {present})"
    if op == "is_empty":
        return _is_empty_sql(value, present)
    if op == "eq":
        return _equals_sql(bind, value, operand)
    if op == "ne":
        return f"({present} AND NOT {_equals_sql(bind, value, operand)})"
    if op in ("in", "not_in"):
        found = "(" + " OR ".join(_equals_sql(bind, value, item) for item in operand) + ")"
        return found if op == "in" else f"({present} AND NOT {found})"
    if op == "contains":
        return _contains_sql(bind, value, operand)
    if op == "starts_with":
        text = f"({value} ->> '$')"
        return f"coalesce(json_type({value}) = 'VARCHAR' AND starts_with({text}, {bind(operand)}), false)"
    return _ordered_sql(bind, value, op, operand)


def _equals_sql(bind: Any, value: str, operand: Any) -> str:
    if isinstance(operand, bool):
        test = f"json_type({value}) = 'BOOLEAN' AND TRY_CAST({value} AS BOOLEAN) = {bind(operand)}"
    elif is_number(operand):
        test = (
            f"json_type({value}) IN {_NUMBER_TYPES}"
            f" AND TRY_CAST({value} AS DOUBLE) = {bind(float(operand))}"
        )
    elif isinstance(operand, str):
        test = f"json_type({value}) = 'VARCHAR' AND ({value} ->> '$') = {bind(operand)}"
    else:
        return "false"
    return f"coalesce({test}, false)"


def _contains_sql(bind: Any, value: str, operand: Any) -> str:
    element = _equals_sql(bind, "item", operand)
    in_list = (
        f"CASE WHEN json_type({value}) = 'ARRAY' THEN"
        f" len(list_filter(TRY_CAST({value} AS JSON[]), lambda item: {element})) > 0 END"
    )
    if not isinstance(operand, str):
        return f"coalesce({in_list}, false)"
    in_text = f"json_type({value}) = 'VARCHAR' AND contains({value} ->> '$', {bind(operand)})"
    return f"(coalesce({in_text}, false) OR coalesce({in_list}, false))"


def _ordered_sql(bind: Any, value: str, op: str, operand: Any) -> str:
    number = f"TRY_CAST({value} AS DOUBLE)"
    is_numeric = f"json_type({value}) IN {_NUMBER_TYPES}"
    if op == "between":
        low, high = (bind(float(bound)) for bound in operand)
        return f"coalesce({is_numeric} AND {number} BETWEEN {low} AND {high}, false)"
    if not is_number(operand):
        return "false"
    return f"coalesce({is_numeric} AND {number} {_ORDER_SQL[op]} {bind(float(operand))}, false)"


def _is_empty_sql(value: str, present: str) -> str:
    kind = f"json_type({value})"
    return (
        f"(NOT {present}"
        f" OR coalesce({kind} = 'VARCHAR' AND ({value} ->> '$') = '', false)"
        f" OR coalesce({kind} = 'ARRAY' AND json_array_length({value}) = 0, false)"
        f" OR coalesce({kind} = 'OBJECT' AND len(json_keys({value})) = 0, false))"
    )


def segment_members(
    connection: duckdb.DuckDBPyConnection,
    rule: SegmentRule,
    *,
    now: datetime,
    tz: str,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    account_id: str | None = None,
) -> list[str]:
    """Return the sorted ids of the segment's members at `now`."""
    query = compile_segment(rule, now=now, tz=tz, horizon_days=horizon_days, account_id=account_id)
    return [row[0] for row in connection.execute(query.sql, query.params).fetchall()]


def count_members(
    connection: duckdb.DuckDBPyConnection,
    rule: SegmentRule,
    *,
    now: datetime,
    tz: str,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    account_id: str | None = None,
) -> int:
    """Count the segment's members at `now`: the size a campaign run at `now` would target.

    The count is exact for the landed data. That data trails the stream by the landing
    flush interval, so the count is an estimate of the streaming side's audience.
    """
    query = compile_segment(rule, now=now, tz=tz, horizon_days=horizon_days, account_id=account_id)
    rows = connection.execute(f"SELECT count(*) FROM ({query.sql})", query.params).fetchall()
    return int(rows[0][0])


def export_members(
    connection: duckdb.DuckDBPyConnection,
    rule: SegmentRule,
    path: Path,
    *,
    now: datetime,
    tz: str,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    account_id: str | None = None,
) -> int:
    """Write the members' ids to a Parquet file with one `user_id` column, atomically.

    Returns:
        The number of members written.
    """
    query = compile_segment(rule, now=now, tz=tz, horizon_days=horizon_days, account_id=account_id)
    table: pa.Table = connection.sql(query.sql, params=query.params).to_arrow_table()
    write_parquet_atomically(table, path)
    return int(table.num_rows)


def is_member(
    connection: duckdb.DuckDBPyConnection,
    rule: SegmentRule,
    user_id: str,
    *,
    now: datetime,
    tz: str,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    account_id: str | None = None,
) -> bool:
    """Return whether one user belongs to the segment at `now`, from the landed data."""
    query = compile_segment(rule, now=now, tz=tz, horizon_days=horizon_days, account_id=account_id)
    params = {**query.params, "member_user_id": user_id}
    sql = f"SELECT count(*) FROM ({query.sql}) WHERE user_id = $member_user_id"
    return bool(connection.execute(sql, params).fetchall()[0][0])
