"""Saved segments that campaigns target by id.

A definition arrives validated against the rule language (`schemas.segment_rules`) by the
API's request models, and is stored as that JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control.audit import record_audit
from control.identity import new_id
from control.models import Campaign, Segment, User
from control.outbox import enqueue_definition, enqueue_tombstone
from control.views import segment_definition
from domain.errors import ConflictError, InvalidValue, NotFound
from schemas.envelope import RESERVED_EVENT_NAMES
from schemas.segment_rules import EventRule, MessageRule, parse_segment_rule, walk_rules

__all__ = [
    "check_campaign_references",
    "create_segment",
    "delete_segment",
    "get_segment",
    "list_segments",
    "update_segment",
]

# The Notification events' property naming the run, `<campaign id>@<run time>`.
_RUN_PROPERTY = "run_id"


def list_segments(session: Session, account_id: str) -> Sequence[Segment]:
    query = select(Segment).where(Segment.account_id == account_id).order_by(Segment.name)
    return session.scalars(query).all()


def get_segment(session: Session, account_id: str, segment_id: str) -> Segment:
    segment = session.get(Segment, segment_id)
    if segment is None or segment.account_id != account_id:
        raise NotFound("segment", segment_id)
    return segment


def check_campaign_references(
    session: Session, account_id: str, definition: dict[str, Any], path: tuple[str | int, ...]
) -> None:
    """Reject a segment definition that could pick out another account's campaign.

    The landed Notification events of every account are read alike. So a message rule may
    name only the account's own campaigns, and an event rule over Notification events may
    not filter on `run_id`, whose value starts with the campaign's id. `path` locates the
    definition in the request, for the error.

    Raises:
        InvalidValue: a rule names a campaign that the account does not have, or filters
            Notification events on their run.
    """
    for rule_path, rule in walk_rules(parse_segment_rule(definition)):
        if isinstance(rule, MessageRule) and rule.campaign_id is not None:
            campaign = session.get(Campaign, rule.campaign_id)
            if campaign is None or campaign.account_id != account_id:
                raise InvalidValue(
                    f"campaign {rule.campaign_id!r} does not exist",
                    (*path, *rule_path, "campaign_id"),
                )
        if isinstance(rule, EventRule) and rule.event in RESERVED_EVENT_NAMES:
            for index, item in enumerate(rule.filters):
                if item.property == _RUN_PROPERTY:
                    raise InvalidValue(
                        f"{rule.event} events cannot be filtered on {_RUN_PROPERTY}; pick the "
                        "campaign with a message rule and its campaign_id instead",
                        (*path, *rule_path, "filters", index, "property"),
                    )


def create_segment(
    session: Session, actor: User, name: str, definition: dict[str, Any], now: datetime
) -> Segment:
    check_campaign_references(session, actor.account_id, definition, ("definition",))
    segment = Segment(
        id=new_id("seg"),
        account_id=actor.account_id,
        name=name,
        definition=definition,
        created_at=now,
        updated_at=now,
    )
    session.add(segment)
    _save(session, actor, segment, "create", now, {"name": name})
    return segment


def update_segment(
    session: Session,
    actor: User,
    segment_id: str,
    name: str | None,
    definition: dict[str, Any] | None,
    now: datetime,
) -> Segment:
    segment = get_segment(session, actor.account_id, segment_id)
    changes: dict[str, Any] = {}
    if name is not None and name != segment.name:
        changes["name"] = {"from": segment.name, "to": name}
        segment.name = name
    if definition is not None and definition != segment.definition:
        check_campaign_references(session, actor.account_id, definition, ("definition",))
        changes["definition"] = {"from": segment.definition, "to": definition}
        segment.definition = definition
    segment.updated_at = now
    _save(session, actor, segment, "update", now, changes)
    return segment


def delete_segment(session: Session, actor: User, segment_id: str, now: datetime) -> None:
    """Delete a segment that no campaign targets.

    Raises:
        ConflictError: campaigns target the segment; the error names them.
    """
    segment = get_segment(session, actor.account_id, segment_id)
    users = [c.name for c in _campaigns_targeting(session, segment)]
    if users:
        raise ConflictError(
            f"segment {segment.name!r} is the audience of {len(users)} campaign(s): "
            f"{', '.join(repr(n) for n in users)}; change their Who first"
        )
    session.delete(segment)
    record_audit(session, actor, "segment", segment.id, "delete", now)
    enqueue_tombstone(session, segment.id, now)
    session.commit()


def _campaigns_targeting(session: Session, segment: Segment) -> list[Campaign]:
    # JSON path queries differ between SQLite and PostgreSQL, and an account has few
    # campaigns, so the filter runs in Python.
    query = select(Campaign).where(Campaign.account_id == segment.account_id)
    return [c for c in session.scalars(query) if c.who.get("segment_id") == segment.id]


def _save(
    session: Session,
    actor: User,
    segment: Segment,
    action: str,
    now: datetime,
    changes: dict[str, Any],
) -> None:
    session.flush()
    record_audit(session, actor, "segment", segment.id, action, now, changes=changes)
    enqueue_definition(session, "segment", segment.id, segment_definition(segment), now)
    session.commit()
