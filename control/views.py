"""Conversions of stored rows to the API's public models and to change-feed definitions."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from control.models import Account, AuditEntry, Campaign, Label, Segment
from domain.schedule import first_run_at
from schemas.campaign import AuditEntryPublic, CampaignPublic, When
from schemas.label import LabelPublic

__all__ = [
    "audit_public",
    "campaign_definition",
    "campaign_public",
    "label_public",
    "parse_when",
    "segment_definition",
]

_WHEN = TypeAdapter[When](When)


def parse_when(raw: dict[str, Any]) -> When:
    return _WHEN.validate_python(raw)


def label_public(label: Label) -> LabelPublic:
    return LabelPublic(id=label.id, name=label.name, created_at=label.created_at)


def campaign_public(
    campaign: Campaign, timezone: str, warnings: list[str] | None = None
) -> CampaignPublic:
    """Return the public view of `campaign`; `timezone` is its account's."""
    return CampaignPublic.model_validate(
        {
            "id": campaign.id,
            "name": campaign.name,
            "channel": campaign.channel,
            "labels": [label.name for label in campaign.labels],
            "who": campaign.who,
            "what": campaign.what,
            "when": campaign.when,
            "delivery": campaign.delivery,
            "state": campaign.state,
            "archived": campaign.archived,
            "created_by": campaign.created_by,
            "created_at": campaign.created_at,
            "updated_at": campaign.updated_at,
            "version": campaign.version,
            "first_run_at": first_run_at(parse_when(campaign.when), timezone),
            "next_run_at": campaign.next_run_at,
            "last_run_at": campaign.last_run_at,
            "rejection_comment": campaign.rejection_comment,
            "warnings": warnings or [],
        }
    )


def campaign_definition(campaign: Campaign, account: Account) -> dict[str, Any]:
    """Return the feed definition: the public view, the definition workers send from, and
    the account settings they apply."""
    timezone = account.timezone
    definition = campaign_public(campaign, timezone).model_dump(mode="json", exclude={"warnings"})
    definition["account_id"] = campaign.account_id
    definition["timezone"] = timezone
    definition["account_delivery"] = account.delivery
    definition["live_definition"] = campaign.live_definition
    return definition


def segment_definition(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.id,
        "account_id": segment.account_id,
        "name": segment.name,
        "definition": segment.definition,
        "updated_at": segment.updated_at.isoformat(),
    }


def audit_public(entry: AuditEntry) -> AuditEntryPublic:
    return AuditEntryPublic.model_validate(entry, from_attributes=True)
