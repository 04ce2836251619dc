"""SQLAlchemy 2 models of the control plane: accounts, users, tokens, labels, segments,
campaigns, the audit log and the change-feed outbox.

Datetimes are stored as naive UTC (SQLite has no time zone type) and come back aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Account",
    "ApiToken",
    "AuditEntry",
    "Base",
    "Campaign",
    "FeedOutbox",
    "Label",
    "Segment",
    "User",
    "campaign_labels",
]


class UtcDateTime(TypeDecorator[datetime]):
    """Store aware datetimes as naive UTC; reject naive ones, whose zone is unknown."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value} has no time zone; pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON}


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    approval_workflow: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    # `AccountDeliverySettings` as JSON; null while the workers' own settings apply.
    delivery: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("account_id", "email"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]

    account: Mapped[Account] = relationship()


class ApiToken(Base):
    """A user's API token; only the SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship()


campaign_labels = Table(
    "campaign_labels",
    Base.metadata,
    Column("campaign_id", ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column("label_id", ForeignKey("labels.id"), primary_key=True),
    Column("position", Integer, nullable=False, default=0),
)


class Label(Base):
    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("account_id", "name_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Campaign(Base):
    """A campaign and its lifecycle bookkeeping.

    `live_definition` is the definition as last published, which workers send from while
    an edit of a started campaign waits for approval. `resume_state` is the published
    state that approval returns a started campaign to.
    """

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32), index=True)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    who: Mapped[dict[str, Any]]
    what: Mapped[dict[str, Any]]
    when: Mapped[dict[str, Any]]
    delivery: Mapped[dict[str, Any]]
    live_definition: Mapped[dict[str, Any] | None]
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)
    has_started: Mapped[bool] = mapped_column(Boolean, default=False)
    resume_state: Mapped[str | None] = mapped_column(String(32))
    next_run_at: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    rejection_comment: Mapped[str | None] = mapped_column(Text)

    labels: Mapped[list[Label]] = relationship(
        secondary=campaign_labels, order_by=campaign_labels.c.position, lazy="selectin"
    )

    # Every UPDATE names the version it read. After a concurrent change it matches no row,
    # so SQLAlchemy raises StaleDataError instead of letting the later write win silently.
    # The application sets the new version itself, one per recorded change.
    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    resource: Mapped[str] = mapped_column(String(20))
    resource_id: Mapped[str] = mapped_column(String(40), index=True)
    action: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime]
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str | None] = mapped_column(String(32))
    changes: Mapped[dict[str, Any]]
    comment: Mapped[str | None] = mapped_column(Text)


class FeedOutbox(Base):
    """Definitions waiting to be published to the `campaigns` topic, in commit order.

    `value` None is a tombstone.
    """

    __tablename__ = "feed_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(40))
    value: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
