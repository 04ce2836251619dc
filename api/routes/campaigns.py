"""Campaigns: create, read, edit under the lifecycle rules, act on, preview, audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, status
from pydantic import AwareDatetime, BaseModel, ConfigDict

from api.auth import AdminUser, ApproverUser, ClockDep, CurrentUser, EditorUser, SessionDep
from api.json_values import StrictJSONRoute
from control import campaign_actions as actions
from control import campaigns as store
from control.audit import list_audit
from control.models import Campaign, User
from control.views import audit_public, campaign_public
from domain.lifecycle import CampaignState
from schemas.campaign import (
    AuditEntryPublic,
    CampaignApproval,
    CampaignCreate,
    CampaignPreview,
    CampaignPreviewRequest,
    CampaignPublic,
    CampaignRejection,
    CampaignUpdate,
)
from schemas.campaign_message import Channel
from schemas.text import StoredText

router = APIRouter(prefix="/campaigns", tags=["campaigns"], route_class=StrictJSONRoute)

PublishOptions = Annotated[CampaignApproval, Body(default_factory=CampaignApproval)]


class RunFinished(BaseModel):
    """A finished run; `next_run_at` None means the campaign is complete."""

    model_config = ConfigDict(extra="forbid")

    next_run_at: AwareDatetime | None = None


def _public(campaign: Campaign, user: User, warnings: list[str] | None = None) -> CampaignPublic:
    return campaign_public(campaign, user.account.timezone, warnings)


@router.get("", response_model=list[CampaignPublic])
def read_campaigns(
    user: CurrentUser,
    session: SessionDep,
    state: CampaignState | None = None,
    channel: Channel | None = None,
    label: Annotated[StoredText | None, Query(max_length=200)] = None,
    include_archived: bool = False,
) -> list[CampaignPublic]:
    found = store.list_campaigns(session, user.account_id, state, channel, label, include_archived)
    return [_public(c, user) for c in found]


@router.post("", response_model=CampaignPublic, status_code=status.HTTP_201_CREATED)
def create_campaign(
    body: CampaignCreate, user: EditorUser, session: SessionDep, clock: ClockDep
) -> CampaignPublic:
    """Save a new campaign as a draft."""
    return _public(store.create_campaign(session, user, body, clock.now()), user)


@router.get("/{campaign_id}", response_model=CampaignPublic)
def read_campaign(
    campaign_id: StoredText, user: CurrentUser, session: SessionDep
) -> CampaignPublic:
    return _public(store.get_campaign(session, user.account_id, campaign_id), user)


@router.patch("/{campaign_id}", response_model=CampaignPublic)
def update_campaign(
    campaign_id: StoredText,
    body: CampaignUpdate,
    user: EditorUser,
    session: SessionDep,
    clock: ClockDep,
) -> CampaignPublic:
    """Edit a campaign; what may change depends on its state, the time and the editor.

    A changed section that the rules do not allow gets 409 and nothing is saved. So does any
    edit after the scheduled or next run time, whose changes are discarded.
    """
    campaign, warnings = store.update_campaign(session, user, campaign_id, body, clock.now())
    return _public(campaign, user, warnings)


@router.post("/{campaign_id}/publish", response_model=CampaignPublic)
def publish_campaign(
    campaign_id: StoredText,
    user: EditorUser,
    session: SessionDep,
    clock: ClockDep,
    options: PublishOptions,
) -> CampaignPublic:
    """Publish a draft; a time in the past needs `at` (a new time) or `run_now`."""
    return _public(actions.publish_campaign(session, user, campaign_id, options, clock.now()), user)


@router.post("/{campaign_id}/send-for-approval", response_model=CampaignPublic)
def send_for_approval(
    campaign_id: StoredText, user: EditorUser, session: SessionDep, clock: ClockDep
) -> CampaignPublic:
    return _public(actions.send_for_approval(session, user, campaign_id, clock.now()), user)


@router.post("/{campaign_id}/approve", response_model=CampaignPublic)
def approve_campaign(
    campaign_id: StoredText,
    user: ApproverUser,
    session: SessionDep,
    clock: ClockDep,
    options: PublishOptions,
) -> CampaignPublic:
    """Approve and publish; a user may not approve a campaign they created."""
    return _public(actions.approve_campaign(session, user, campaign_id, options, clock.now()), user)


@router.post("/{campaign_id}/reject", response_model=CampaignPublic)
def reject_campaign(
    campaign_id: StoredText,
    body: CampaignRejection,
    user: ApproverUser,
    session: SessionDep,
    clock: ClockDep,
) -> CampaignPublic:
    campaign = actions.reject_campaign(session, user, campaign_id, body.comment, clock.now())
    return _public(campaign, user)


@router.post("/{campaign_id}/stop", response_model=CampaignPublic)
def stop_campaign(
    campaign_id: StoredText, user: EditorUser, session: SessionDep, clock: ClockDep
) -> CampaignPublic:
    return _public(actions.stop_campaign(session, user, campaign_id, clock.now()), user)


@router.post("/{campaign_id}/pause", status_code=status.HTTP_409_CONFLICT)
def pause_campaign(campaign_id: StoredText, user: EditorUser, session: SessionDep) -> None:
    """Always return 409, because a published campaign can only be stopped, not paused."""
    actions.pause_campaign(session, user, campaign_id)


@router.post(
    "/{campaign_id}/duplicate", response_model=CampaignPublic, status_code=status.HTTP_201_CREATED
)
def duplicate_campaign(
    campaign_id: StoredText, user: EditorUser, session: SessionDep, clock: ClockDep
) -> CampaignPublic:
    return _public(actions.duplicate_campaign(session, user, campaign_id, clock.now()), user)


@router.post("/{campaign_id}/archive", response_model=CampaignPublic)
def archive_campaign(
    campaign_id: StoredText, user: EditorUser, session: SessionDep, clock: ClockDep
) -> CampaignPublic:
    return _public(actions.archive_campaign(session, user, campaign_id, clock.now()), user)


@router.post("/{campaign_id}/preview", response_model=CampaignPreview)
def preview_campaign(
    campaign_id: StoredText, body: CampaignPreviewRequest, user: CurrentUser, session: SessionDep
) -> CampaignPreview:
    """Render the message for the profile in the body, as the user would get it."""
    return store.preview_campaign(store.get_campaign(session, user.account_id, campaign_id), body)


@router.get("/{campaign_id}/audit", response_model=list[AuditEntryPublic])
def read_campaign_audit(
    campaign_id: StoredText, user: CurrentUser, session: SessionDep
) -> list[AuditEntryPublic]:
    campaign = store.get_campaign(session, user.account_id, campaign_id)
    return [audit_public(e) for e in list_audit(session, user.account_id, campaign.id)]


@router.post("/{campaign_id}/runs/start", response_model=CampaignPublic)
def start_run(
    campaign_id: StoredText, user: AdminUser, session: SessionDep, clock: ClockDep
) -> CampaignPublic:
    """Record that a run began; called by the worker that runs the campaign."""
    return _public(actions.start_run(session, user, campaign_id, clock.now()), user)


@router.post("/{campaign_id}/runs/finish", response_model=CampaignPublic)
def finish_run(
    campaign_id: StoredText,
    body: RunFinished,
    user: AdminUser,
    session: SessionDep,
    clock: ClockDep,
) -> CampaignPublic:
    """Record that a run ended, with the time of the next run if there is one."""
    campaign = actions.finish_run(session, user, campaign_id, body.next_run_at, clock.now())
    return _public(campaign, user)
