"""API and data contracts of campaigns: Who, When, delivery controls and the families
`CampaignCreate`, `CampaignUpdate` and `CampaignPublic`. The What lives in
`schemas.campaign_message`.

Durations are ISO 8601 strings (`PT1H`) or seconds; times of day are local to the
delivery time zone chosen in `when.timezone`.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from domain.lifecycle import CampaignState
from schemas.campaign_message import Channel, WhatSection, check_json_size
from schemas.durations import durations_reject_booleans
from schemas.envelope import ENGINE_EVENT_NAMES
from schemas.text import StoredText

__all__ = [
    "SELF_TRIGGERING_EVENTS",
    "AllUsersAudience",
    "AuditEntryPublic",
    "CampaignApproval",
    "CampaignCreate",
    "CampaignDelivery",
    "CampaignLimits",
    "CampaignPreview",
    "CampaignPreviewRequest",
    "CampaignPublic",
    "CampaignRejection",
    "CampaignUpdate",
    "ConversionGoal",
    "DatePropertyTrigger",
    "EventCondition",
    "EventTrigger",
    "InactionTrigger",
    "InlineSegmentAudience",
    "OneTimeAt",
    "OneTimeNow",
    "PerUserLimit",
    "PropertyFilter",
    "QuietHours",
    "QuietHoursWindow",
    "RecurringSchedule",
    "SavedSegmentAudience",
    "Throttle",
    "When",
    "Who",
]

MAX_SEGMENT_DEFINITION_BYTES = 64 * 1024
MAX_CONVERSION_WINDOW = timedelta(days=155)  # five months of 31 days
# Counts beyond this are typos, and JSON encoders of other languages lose precision past 2**53.
MAX_COUNT = 1_000_000_000
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Name = Annotated[str, Field(min_length=1, max_length=120)]

_LOCAL_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")


def _local_time_text(value: Any) -> Any:
    # pydantic would also take seconds and a zone ("22:00Z"), but a time of day is local
    # to the delivery zone. YAML reads an unquoted 22:00 as the number 1320.
    if isinstance(value, time) and value.tzinfo is None:
        return value
    if isinstance(value, str) and _LOCAL_TIME.match(value):
        return value
    raise ValueError(
        f"expected a local time of day as text, such as '22:00', got {value!r}; quote it in YAML"
    )


LocalTime = Annotated[time, BeforeValidator(_local_time_text)]
# Herald writes one of these for every message it decides, so a campaign triggered by them
# would trigger itself.
SELF_TRIGGERING_EVENTS = ENGINE_EVENT_NAMES


def _trigger_event(name: str) -> str:
    if name != name.strip():
        raise ValueError(
            f"event name {name!r} has spaces at its ends; events are stored without them"
        )
    if name in SELF_TRIGGERING_EVENTS:
        raise ValueError(
            f"{name!r} cannot trigger a campaign: Herald records it for every message, so "
            "the campaign would trigger itself"
        )
    return name


TriggerEvent = Annotated[Name, AfterValidator(_trigger_event)]
FilterValue = str | int | float | bool | list[str | int | float | bool] | None


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Who ------------------------------------------------------------------------------------


class AllUsersAudience(_Contract):
    type: Literal["all_users"] = "all_users"


class SavedSegmentAudience(_Contract):
    type: Literal["saved_segment"] = "saved_segment"
    segment_id: Annotated[StoredText, Field(min_length=1, max_length=64)]


class InlineSegmentAudience(_Contract):
    """A segment defined inside the campaign, in the rule language of `schemas.segment_rules`."""

    type: Literal["inline_segment"] = "inline_segment"
    definition: dict[str, Any] = Field(min_length=1)

    @field_validator("definition")
    @classmethod
    def _bounded(cls, definition: dict[str, Any]) -> dict[str, Any]:
        # Imported here because the rule language reuses this module's PropertyFilter.
        from schemas.segment_rules import check_segment_definition

        check_json_size(definition, MAX_SEGMENT_DEFINITION_BYTES, "the segment definition")
        return check_segment_definition(definition)


Who = Annotated[
    AllUsersAudience | SavedSegmentAudience | InlineSegmentAudience, Field(discriminator="type")
]


# When -----------------------------------------------------------------------------------


class PropertyFilter(_Contract):
    """A condition on one property of an event or one trait of a profile."""

    property: Name
    op: Literal[
        "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists"
    ]
    value: FilterValue = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> PropertyFilter:
        if self.op in ("exists", "not_exists"):
            if self.value is not None:
                raise ValueError(f"operator {self.op!r} takes no `value`")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"operator {self.op!r} needs a non-empty list as `value`")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"operator {self.op!r} needs a single value")
        return self


class EventCondition(_Contract):
    event: TriggerEvent
    property_filters: list[PropertyFilter] = Field(default=[], max_length=20)


class _WhenBase(_Contract):
    """Fields every schedule shares.

    `timezone` chooses whose clock the local times follow: the account's, or each user's
    (runs are then staggered by zone). `start_at` and `end_at` bound when the campaign
    may send at all.
    """

    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    timezone: Literal["account", "user"] = "account"

    @model_validator(mode="after")
    def _ordered(self) -> _WhenBase:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError(f"`end_at` {self.end_at} must be after `start_at` {self.start_at}")
        return self


class OneTimeNow(_WhenBase):
    """Send once, as soon as the campaign is published."""

    type: Literal["now"] = "now"


class OneTimeAt(_WhenBase):
    """Send once at `at`."""

    type: Literal["at"] = "at"
    at: AwareDatetime

    @model_validator(mode="after")
    def _at_inside_bounds(self) -> OneTimeAt:
        if self.end_at and self.at >= self.end_at:
            raise ValueError(f"`at` {self.at} is not before `end_at` {self.end_at}")
        if self.start_at and self.at < self.start_at:
            raise ValueError(f"`at` {self.at} is before `start_at` {self.start_at}")
        return self


class RecurringSchedule(_WhenBase):
    """Send every day, on chosen weekdays, or on chosen days of the month, at `local_time`.

    A month without a chosen day (31 in April) has no run on that day.
    """

    type: Literal["recurring"] = "recurring"
    frequency: Literal["daily", "weekly", "monthly"]
    local_time: LocalTime
    weekdays: list[Weekday] = Field(default=[], max_length=7)
    month_days: list[Annotated[StrictInt, Field(ge=1, le=31)]] = Field(default=[], max_length=31)
    start_date: date
    end_date: date | None = None

    @model_validator(mode="after")
    def _days_fit_frequency(self) -> RecurringSchedule:
        if self.frequency == "weekly" and not self.weekdays:
            raise ValueError("a weekly schedule needs `weekdays`")
        if self.frequency == "monthly" and not self.month_days:
            raise ValueError("a monthly schedule needs `month_days`")
        if self.frequency != "weekly" and self.weekdays:
            raise ValueError(f"`weekdays` only applies to weekly schedules, not {self.frequency}")
        if self.frequency != "monthly" and self.month_days:
            raise ValueError(
                f"`month_days` only applies to monthly schedules, not {self.frequency}"
            )
        if self.end_date and self.end_date < self.start_date:
            raise ValueError(f"`end_date` {self.end_date} is before `start_date` {self.start_date}")
        return self


class EventTrigger(_WhenBase):
    """Send to a user after each event that matches; `delay` postpones the send.

    `profile_filters` are checked against the user's profile as it is when the event is
    processed, including traits that arrived before it.
    """

    type: Literal["event"] = "event"
    event: TriggerEvent
    property_filters: list[PropertyFilter] = Field(default=[], max_length=20)
    profile_filters: list[PropertyFilter] = Field(default=[], max_length=20)
    delay: timedelta = Field(default=timedelta(0), ge=timedelta(0), le=timedelta(days=30))

    _delay_not_boolean = durations_reject_booleans("delay")


class InactionTrigger(_WhenBase):
    """Send when a user did `did` and then not `did_not` within `within`.

    Every `did` event opens its own window from its timestamp t to t + `within`. The window
    is closed at both ends: a `did_not` event by the same user at t or at exactly
    t + `within` cancels the send. A window that closes without one sends at its end.
    """

    type: Literal["inaction"] = "inaction"
    did: EventCondition
    did_not: EventCondition
    within: timedelta = Field(ge=timedelta(minutes=1), le=timedelta(days=30))

    _within_not_boolean = durations_reject_booleans("within")

    @model_validator(mode="after")
    def _different_events(self) -> InactionTrigger:
        if self.did == self.did_not:
            raise ValueError("`did` and `did_not` are the same condition, so no window could close")
        if self.did.event == self.did_not.event and all(
            condition in self.did.property_filters for condition in self.did_not.property_filters
        ):
            # Windows are closed at both ends, so every `did` event would cancel its own.
            raise ValueError(
                "every `did` event also matches `did_not`, so each would cancel its own "
                "window; give `did_not` a filter that `did` events do not meet, or another event"
            )
        return self


class DatePropertyTrigger(_WhenBase):
    """Send `days_before` days before the date in a profile trait, at `local_time`."""

    type: Literal["date_property"] = "date_property"
    property: Name
    days_before: StrictInt = Field(default=0, ge=0, le=365)
    local_time: LocalTime


When = Annotated[
    OneTimeNow
    | OneTimeAt
    | RecurringSchedule
    | EventTrigger
    | InactionTrigger
    | DatePropertyTrigger,
    Field(discriminator="type"),
]
TRIGGERED_TYPES = frozenset({"event", "inaction", "date_property"})


# Delivery controls ----------------------------------------------------------------------


class PerUserLimit(_Contract):
    """How often one user may get this campaign.

    `rolling` counts sends in the last `window`; the calendar periods count sends since
    the period began in the delivery time zone; `ever` counts all sends.
    """

    max_sends: StrictInt = Field(ge=1, le=1000)
    period: Literal["rolling", "calendar_day", "calendar_week", "calendar_month", "ever"]
    window: timedelta | None = Field(default=None, ge=timedelta(minutes=5), le=timedelta(days=30))

    _window_not_boolean = durations_reject_booleans("window")

    @model_validator(mode="after")
    def _window_for_rolling(self) -> PerUserLimit:
        if self.period == "rolling" and self.window is None:
            raise ValueError("a `rolling` limit needs a `window`")
        if self.period != "rolling" and self.window is not None:
            raise ValueError(f"`window` only applies to `rolling` limits, not {self.period!r}")
        return self


class QuietHoursWindow(_Contract):
    """Hours on the given weekdays when nothing is sent; a window may cross midnight."""

    weekdays: list[Weekday] = Field(min_length=1, max_length=7)
    start: LocalTime
    end: LocalTime


class QuietHours(_Contract):
    windows: list[QuietHoursWindow] = Field(min_length=1, max_length=14)
    action: Literal["defer", "drop"]


class Throttle(_Contract):
    max_per_5_minutes: StrictInt = Field(ge=1, le=MAX_COUNT)


class ConversionGoal(_Contract):
    event: Name
    property_filters: list[PropertyFilter] = Field(default=[], max_length=20)
    window: timedelta = Field(ge=timedelta(minutes=1), le=MAX_CONVERSION_WINDOW)
    revenue_property: Name | None = None

    _window_not_boolean = durations_reject_booleans("window")


class CampaignLimits(_Contract):
    """Caps on sends of the campaign: per run, per day of the account's calendar, and overall."""

    per_run: StrictInt | None = Field(default=None, ge=1, le=MAX_COUNT)
    per_day: StrictInt | None = Field(default=None, ge=1, le=MAX_COUNT)
    overall: StrictInt | None = Field(default=None, ge=1, le=MAX_COUNT)
    max_qualified_users: StrictInt | None = Field(default=None, ge=1, le=MAX_COUNT)


class CampaignDelivery(_Contract):
    """Delivery controls; `per_user` None means send every time the user qualifies.

    With delivery in each user's time zone, `missed_local_time` decides what happens to
    users whose local run time had already passed when the run started, and
    `cutoff_local_time` stops all delivery for the day at that local time.
    """

    per_user: PerUserLimit | None = None
    missed_local_time: Literal["drop", "next_day"] = "next_day"
    cutoff_local_time: LocalTime | None = None
    ignore_global_caps: StrictBool = False
    quiet_hours: QuietHours | None = None
    throttle: Throttle | None = None
    control_group_percent: StrictInt | None = Field(default=None, ge=2, le=99)
    conversion_goal: ConversionGoal | None = None
    limits: CampaignLimits = CampaignLimits()


# Campaign families ----------------------------------------------------------------------


CampaignName = Annotated[StoredText, Field(min_length=1, max_length=200)]
LabelList = list[Annotated[StoredText, Field(min_length=1, max_length=200)]]


def _strip_name(name: str) -> str:
    stripped = name.strip()
    if not stripped:
        raise ValueError("the campaign name is empty or only spaces")
    return stripped


class CampaignCreate(_Contract):
    """A new campaign; it starts as a draft."""

    name: CampaignName
    channel: Channel
    labels: LabelList = Field(default=[], max_length=50)
    who: Who = AllUsersAudience()
    what: WhatSection
    when: When
    delivery: CampaignDelivery = CampaignDelivery()

    @field_validator("name")
    @classmethod
    def _stripped_name(cls, name: str) -> str:
        return _strip_name(name)

    @model_validator(mode="after")
    def _message_matches_channel(self) -> CampaignCreate:
        check_channel(self.channel, self.what)
        return self


class CampaignUpdate(_Contract):
    """Changes to a campaign. An omitted section stays as it is; a section that is sent
    (`who`, `what`, `when`, `delivery`) replaces the stored one whole."""

    name: CampaignName | None = None
    channel: Channel | None = None
    labels: LabelList | None = Field(default=None, max_length=50)
    who: Who | None = None
    what: WhatSection | None = None
    when: When | None = None
    delivery: CampaignDelivery | None = None

    @field_validator("name")
    @classmethod
    def _stripped_name(cls, name: str | None) -> str | None:
        return None if name is None else _strip_name(name)


def check_channel(channel: str, what: WhatSection) -> None:
    """Raise ValueError when a variant's message is for another channel."""
    for variant in what.variants:
        if variant.message.channel != channel:
            raise ValueError(
                f"variant {variant.name!r} has a {variant.message.channel!r} message but the "
                f"campaign's channel is {channel!r}"
            )


class CampaignPublic(_Contract):
    """A campaign as the API returns it."""

    id: str
    name: str
    channel: Channel
    labels: list[str]
    who: Who
    what: WhatSection
    when: When
    delivery: CampaignDelivery
    state: CampaignState
    archived: bool
    created_by: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    version: int
    first_run_at: AwareDatetime | None = Field(
        description="When the first run is (or was) due; none for `now` and open-ended triggers"
    )
    next_run_at: AwareDatetime | None
    last_run_at: AwareDatetime | None
    rejection_comment: str | None
    warnings: list[str] = Field(
        default=[], description="Notes about this response, such as a run time that has passed"
    )


class CampaignApproval(_Contract):
    """Options of publish and approve: move the first run, or run now."""

    at: AwareDatetime | None = None
    run_now: StrictBool = False

    @model_validator(mode="after")
    def _one_choice(self) -> CampaignApproval:
        if self.at is not None and self.run_now:
            raise ValueError("give either `at` or `run_now`, not both")
        return self


class CampaignRejection(_Contract):
    comment: Annotated[StoredText, Field(min_length=1, max_length=2000)]


class CampaignPreviewRequest(_Contract):
    """A user profile to render the message for; `variant` None renders every variant."""

    profile: dict[str, Any] = {}
    variant: str | None = None


class CampaignPreview(_Contract):
    variants: dict[str, dict[str, Any]]


class AuditEntryPublic(_Contract):
    """One recorded change: who did what to which resource, and the fields it changed."""

    id: int
    resource: Literal["campaign", "label", "segment", "account", "user"]
    resource_id: str
    action: str
    actor_id: str
    at: datetime
    from_state: str | None
    to_state: str | None
    changes: dict[str, Any]
    comment: str | None
