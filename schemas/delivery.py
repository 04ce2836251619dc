"""Contracts of delivery decisions: account-wide frequency caps and the outcome of one send.

`GlobalFrequencyCaps` and `AccountDeliverySettings` are account settings, validated like
every API payload. `Decision` is produced once per candidate message on the stream's hot
path, so it is a slotted dataclass rather than a pydantic model: building one costs a
fraction of a microsecond instead of a validation pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from schemas.campaign_message import Channel
from schemas.durations import durations_reject_booleans

__all__ = [
    "MAX_CAP_DAYS",
    "MAX_CAP_MESSAGES",
    "AccountDeliverySettings",
    "ChannelFrequencyCap",
    "Decision",
    "DeliveryOutcome",
    "GlobalFrequencyCaps",
    "NotSentReason",
]

MAX_CAP_DAYS = 30
MAX_CAP_MESSAGES = 1000
MIN_GAP_FLOOR = timedelta(minutes=5)
MIN_GAP_CEILING = timedelta(days=7)


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelFrequencyCap(_Contract):
    """The cap of one channel across all campaigns.

    At most `max_messages` sends in `days` local calendar days of the user (today and the
    `days - 1` days before it), and at least `min_gap` between two sends. Either part may
    be left out, but not both.
    """

    max_messages: StrictInt | None = Field(default=None, ge=1, le=MAX_CAP_MESSAGES)
    days: StrictInt = Field(default=1, ge=1, le=MAX_CAP_DAYS)
    min_gap: timedelta | None = Field(default=None, ge=MIN_GAP_FLOOR, le=MIN_GAP_CEILING)

    _min_gap_not_boolean = durations_reject_booleans("min_gap")

    @model_validator(mode="after")
    def _limits_something(self) -> ChannelFrequencyCap:
        if self.max_messages is None and self.min_gap is None:
            raise ValueError("a frequency cap needs `max_messages`, `min_gap` or both")
        return self


class GlobalFrequencyCaps(_Contract):
    """Frequency caps per channel; a channel without an entry is not capped."""

    channels: dict[Channel, ChannelFrequencyCap] = {}


class AccountDeliverySettings(_Contract):
    """Delivery settings of an account that apply to every campaign.

    `control_group_percent` is the account-wide control group: the same users are held
    out of every campaign, on top of each campaign's own control group.
    """

    frequency_caps: GlobalFrequencyCaps = GlobalFrequencyCaps()
    control_group_percent: StrictInt | None = Field(default=None, ge=2, le=5)


class DeliveryOutcome(StrEnum):
    SEND = "send"
    DEFER = "defer"
    SKIP = "skip"


class NotSentReason(StrEnum):
    """Reason a message was deferred or not sent, in the terms of the campaign reports."""

    CAMPAIGN_STOPPED = "campaign_stopped"
    LEFT_AUDIENCE = "left_audience"
    CUT_OFF = "cut_off"
    MISSED_LOCAL_TIME = "missed_local_time"
    UNSUBSCRIBED = "unsubscribed"
    NOT_REACHABLE = "not_reachable"
    GLOBAL_CAP = "global_cap"
    CAMPAIGN_CAP = "campaign_cap"
    QUIET_HOURS = "quiet_hours"
    THROTTLED = "throttled"
    LIMIT_PER_RUN = "limit_per_run"
    LIMIT_PER_DAY = "limit_per_day"
    LIMIT_OVERALL = "limit_overall"
    TOO_MANY_QUALIFIED = "too_many_qualified"
    ACCOUNT_CONTROL_GROUP = "account_control_group"
    CONTROL_GROUP = "control_group"
    AWAITING_WINNER = "awaiting_winner"
    RENDER_FAILED = "render_failed"
    TOO_MANY_WAITING = "too_many_waiting"
    PROVIDER_ERROR = "provider_error"


@dataclass(slots=True)
class Decision:
    """The outcome of one candidate message.

    Attributes:
        outcome: send now, defer to `send_at`, or skip for good.
        reason: why the message was deferred or skipped; None when it is sent.
        send_at: the send time for `send`, the time to decide again for `defer`, and
            None for `skip`.
        variant: the A/B variant sent; None unless the outcome is `send`.
        message: the rendered message of that variant, a JSON object.
        detail: a sentence for people reading the report, such as the render error.
    """

    outcome: DeliveryOutcome
    reason: NotSentReason | None = None
    send_at: datetime | None = None
    variant: str | None = None
    message: dict[str, Any] | None = None
    detail: str | None = None

    # Written out and not frozen: the engine makes one per decision, and the `__init__`
    # of a frozen dataclass sets each field through `object.__setattr__`, which costs
    # about three times as much.
    def __init__(
        self,
        outcome: DeliveryOutcome,
        reason: NotSentReason | None = None,
        send_at: datetime | None = None,
        variant: str | None = None,
        message: dict[str, Any] | None = None,
        detail: str | None = None,
    ) -> None:
        self.outcome = outcome
        self.reason = reason
        self.send_at = send_at
        self.variant = variant
        self.message = message
        self.detail = detail

    @property
    def sent(self) -> bool:
        return self.outcome is DeliveryOutcome.SEND
