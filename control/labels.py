"""Message labels of an account: bulk creation, listing, renaming and deletion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control.audit import record_audit
from control.identity import new_id
from control.models import Campaign, Label, User, campaign_labels
from control.outbox import enqueue_definition, enqueue_tombstone
from control.views import campaign_definition, label_public
from domain.errors import ConflictError, InvalidLabel, InvalidValue, LabelInUse, NotFound
from domain.labels import LabelRejection, label_key, normalise_label, split_label_batch

__all__ = ["create_labels", "delete_label", "get_label", "list_labels", "rename_label"]


def list_labels(session: Session, account_id: str) -> Sequence[Label]:
    query = select(Label).where(Label.account_id == account_id).order_by(func.lower(Label.name))
    return session.scalars(query).all()


def get_label(session: Session, account_id: str, label_id: str) -> Label:
    label = session.get(Label, label_id)
    if label is None or label.account_id != account_id:
        raise NotFound("label", label_id)
    return label


def create_labels(
    session: Session, actor: User, names: Sequence[str], now: datetime
) -> tuple[list[Label], list[LabelRejection]]:
    """Create every valid name of `names`; return the created labels and the rejections."""
    existing = {label.name_key for label in list_labels(session, actor.account_id)}
    accepted, rejected = split_label_batch(names, existing)
    created = [
        Label(
            id=new_id("lbl"),
            account_id=actor.account_id,
            name=name,
            name_key=label_key(name),
            created_at=now,
        )
        for name in accepted
    ]
    session.add_all(created)
    for label in created:
        record_audit(session, actor, "label", label.id, "create", now, changes={"name": label.name})
        _publish(session, label, now)
    session.commit()
    return created, rejected


def rename_label(session: Session, actor: User, label_id: str, raw: str, now: datetime) -> Label:
    """Rename a label; campaigns that carry it show the new name."""
    label = get_label(session, actor.account_id, label_id)

    try:
        name = normalise_label(raw)
    except InvalidLabel as error:
        raise InvalidValue(error.message, ("name",)) from None
    clash = session.scalar(
        select(Label).where(
            Label.account_id == actor.account_id,
            Label.name_key == label_key(name),
            Label.id != label.id,
        )
    )
    if clash is not None:
        raise ConflictError(
            f"label {name!r} already exists as {clash.name!r} (labels are unique regardless of case)"
        )

    changes = {"name": {"from": label.name, "to": name}}
    label.name, label.name_key = name, label_key(name)
    record_audit(session, actor, "label", label.id, "rename", now, changes=changes)
    _publish(session, label, now)

    for campaign in _campaigns_with(session, label):
        enqueue_definition(
            session,
            "campaign",
            campaign.id,
            campaign_definition(campaign, actor.account),
            now,
        )
    session.commit()
    return label


def delete_label(session: Session, actor: User, label_id: str, now: datetime) -> None:
    """Delete a label that no campaign carries.

    Raises:
        LabelInUse: campaigns carry the label; the error names them.
    """
    label = get_label(session, actor.account_id, label_id)
    users = _campaigns_with(session, label)
    if users:
        raise LabelInUse(label.name, [c.name for c in users])
    session.delete(label)
    record_audit(session, actor, "label", label.id, "delete", now, changes={"name": label.name})
    enqueue_tombstone(session, label.id, now)
    session.commit()


def _campaigns_with(session: Session, label: Label) -> Sequence[Campaign]:
    query = (
        select(Campaign)
        .join(campaign_labels, campaign_labels.c.campaign_id == Campaign.id)
        .where(campaign_labels.c.label_id == label.id)
        .order_by(Campaign.name)
    )
    return session.scalars(query).all()


def _publish(session: Session, label: Label, now: datetime) -> None:
    definition = label_public(label).model_dump(mode="json")
    definition["account_id"] = label.account_id
    enqueue_definition(session, "label", label.id, definition, now)
