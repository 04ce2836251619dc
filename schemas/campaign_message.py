"""The What of a campaign: one message model per channel, and A/B variants.

Every text field of a message is a Jinja2 template (see `domain.templates`). Its syntax
is checked when the campaign is validated, and it is rendered per user at send time.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StrictInt,
    field_validator,
    model_validator,
)

from domain.templates import check_template

__all__ = [
    "CHANNELS",
    "AppInboxMessage",
    "Channel",
    "EmailMessage",
    "EmailSender",
    "FacebookAudienceMessage",
    "GoogleAdsAudienceMessage",
    "InAppMessage",
    "Message",
    "MessageButton",
    "MessageVariant",
    "NativeDisplayMessage",
    "PushMessage",
    "SmsMessage",
    "WebExitIntentMessage",
    "WebPopupMessage",
    "WebPushMessage",
    "WebhookMessage",
    "WhatSection",
    "WinnerSelection",
    "check_json_size",
]

Channel = Literal[
    "push",
    "in_app",
    "app_inbox",
    "email",
    "web_push",
    "web_popup",
    "web_exit_intent",
    "native_display",
    "webhook",
    "sms",
    "facebook_audience",
    "google_ads_audience",
]
CHANNELS: tuple[str, ...] = Channel.__args__  # type: ignore[attr-defined]

MAX_VARIANTS = 3
MAX_PAYLOAD_BYTES = 64 * 1024

ShortText = Annotated[str, Field(min_length=1, max_length=255)]
Body = Annotated[str, Field(min_length=1, max_length=4000)]
KeyValues = dict[
    Annotated[str, Field(min_length=1, max_length=120)], Annotated[str, Field(max_length=1024)]
]
Scalar = str | int | float | bool


def check_json_size(value: Any, max_bytes: int, what: str) -> None:
    """Raise ValueError when `value` serialises to more than `max_bytes` of JSON."""
    size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
    if size > max_bytes:
        raise ValueError(f"{what} is {size} bytes of JSON; at most {max_bytes} are allowed")


def _check_templates_in(value: Any) -> None:
    """Check every string of a field, also inside key-value maps and webhook payloads."""
    if isinstance(value, str):
        check_template(value)
    elif isinstance(value, dict):
        for item in value.values():
            _check_templates_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_templates_in(item)


class _MessageBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _check_placeholders(cls, value: Any) -> Any:
        _check_templates_in(value)
        return value


class MessageButton(_MessageBase):
    """A button of an in-app or web pop-up message."""

    text: ShortText
    action: Literal["close", "open_url", "deep_link"] = "close"
    url: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _url_for_links(self) -> MessageButton:
        if self.action != "close" and not self.url:
            raise ValueError(f"a button with action {self.action!r} needs a `url`")
        return self


class PushMessage(_MessageBase):
    channel: Literal["push"] = "push"
    title: ShortText
    body: Body
    image_url: str | None = Field(default=None, max_length=2048)
    deep_link: str | None = Field(default=None, max_length=2048)
    key_values: KeyValues = {}


class InAppMessage(_MessageBase):
    channel: Literal["in_app"] = "in_app"
    layout: Literal[
        "header", "footer", "half_interstitial", "interstitial", "cover", "alert", "custom_html"
    ]
    title: ShortText
    body: Body
    image_url: str | None = Field(default=None, max_length=2048)
    buttons: list[MessageButton] = Field(default=[], max_length=2)
    html: str | None = Field(default=None, max_length=MAX_PAYLOAD_BYTES)

    @model_validator(mode="after")
    def _html_for_custom(self) -> InAppMessage:
        if self.layout == "custom_html" and not self.html:
            raise ValueError("layout 'custom_html' needs `html`")
        return self


class AppInboxMessage(_MessageBase):
    channel: Literal["app_inbox"] = "app_inbox"
    template: Literal["simple", "message_with_icon", "carousel"] = "simple"
    title: ShortText
    body: Body
    image_url: str | None = Field(default=None, max_length=2048)
    expires_after_days: StrictInt = Field(default=30, ge=1, le=365)
    key_values: KeyValues = {}


class EmailSender(_MessageBase):
    name: str | None = Field(default=None, max_length=255)
    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)


class EmailMessage(_MessageBase):
    channel: Literal["email"] = "email"
    subject: ShortText
    sender: EmailSender
    reply_to: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    preheader: str | None = Field(default=None, max_length=255)
    html_body: Annotated[str, Field(min_length=1, max_length=512 * 1024)]
    text_body: Annotated[str, Field(min_length=1, max_length=512 * 1024)]


class WebPushMessage(_MessageBase):
    channel: Literal["web_push"] = "web_push"
    title: ShortText
    body: Body
    url: str = Field(min_length=1, max_length=2048)
    icon_url: str | None = Field(default=None, max_length=2048)


class _WebOverlayMessage(_MessageBase):
    layout: Literal["box", "banner", "interstitial", "custom_html"] = "box"
    title: ShortText
    body: Body
    image_url: str | None = Field(default=None, max_length=2048)
    buttons: list[MessageButton] = Field(default=[], max_length=2)
    html: str | None = Field(default=None, max_length=MAX_PAYLOAD_BYTES)


class WebPopupMessage(_WebOverlayMessage):
    channel: Literal["web_popup"] = "web_popup"


class WebExitIntentMessage(_WebOverlayMessage):
    channel: Literal["web_exit_intent"] = "web_exit_intent"


class NativeDisplayMessage(_MessageBase):
    channel: Literal["native_display"] = "native_display"
    template: Literal["simple", "carousel", "custom_key_value"] = "simple"
    title: str | None = Field(default=None, max_length=255)
    body: str | None = Field(default=None, max_length=4000)
    key_values: KeyValues = {}

    @model_validator(mode="after")
    def _has_content(self) -> NativeDisplayMessage:
        if not (self.title or self.body or self.key_values):
            raise ValueError("a native display needs a `title`, a `body` or `key_values`")
        return self


class WebhookMessage(_MessageBase):
    """A POST of `payload` to `url`; string values of the payload are templates."""

    channel: Literal["webhook"] = "webhook"
    url: HttpUrl
    payload: dict[str, Any]
    profile_fields: list[Annotated[str, Field(min_length=1, max_length=120)]] = []

    @field_validator("payload")
    @classmethod
    def _bounded_payload(cls, payload: dict[str, Any]) -> dict[str, Any]:
        check_json_size(payload, MAX_PAYLOAD_BYTES, "payload")
        return payload


class SmsMessage(_MessageBase):
    channel: Literal["sms"] = "sms"
    text: Annotated[str, Field(min_length=1, max_length=1600)]
    sender_id: str | None = Field(default=None, max_length=20)


class FacebookAudienceMessage(_MessageBase):
    """Adds the campaign's users to a Facebook custom audience instead of messaging them."""

    channel: Literal["facebook_audience"] = "facebook_audience"
    ad_account_id: Annotated[str, Field(min_length=1, max_length=64)]
    audience_name: ShortText


class GoogleAdsAudienceMessage(_MessageBase):
    """Adds the campaign's users to a Google Ads customer list."""

    channel: Literal["google_ads_audience"] = "google_ads_audience"
    customer_id: Annotated[str, Field(min_length=1, max_length=64)]
    audience_name: ShortText


Message = Annotated[
    PushMessage
    | InAppMessage
    | AppInboxMessage
    | EmailMessage
    | WebPushMessage
    | WebPopupMessage
    | WebExitIntentMessage
    | NativeDisplayMessage
    | WebhookMessage
    | SmsMessage
    | FacebookAudienceMessage
    | GoogleAdsAudienceMessage,
    Field(discriminator="channel"),
]


class MessageVariant(BaseModel):
    """One A/B variant; `weight` is its percentage of the audience."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=40)] = "A"
    weight: StrictInt = Field(default=100, ge=1, le=100)
    message: Message


class WinnerSelection(BaseModel):
    """Send the variants to a test share first, then the winner (by clicks) to the rest.

    Ties go to the first variant.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    test_percent: StrictInt = Field(ge=1, le=99)
    wait_hours: StrictInt = Field(ge=1, le=72)


class WhatSection(BaseModel):
    """The message: up to three variants and the defaults of its placeholders."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variants: list[MessageVariant] = Field(min_length=1, max_length=MAX_VARIANTS)
    defaults: dict[Annotated[str, Field(min_length=1, max_length=120)], Scalar] = {}
    winner_selection: WinnerSelection | None = None

    @model_validator(mode="after")
    def _consistent_variants(self) -> WhatSection:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        total = sum(v.weight for v in self.variants)
        if total != 100:
            raise ValueError(f"variant weights must add up to 100, got {total}")
        if self.winner_selection is not None and len(self.variants) < 2:
            raise ValueError("`winner_selection` needs at least two variants")
        return self
