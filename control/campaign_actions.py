"""Lifecycle actions on campaigns: publish, send for approval, approve, reject, stop,
duplicate, archive, and the run transitions that workers report.

Every action records an audit entry and queues the new definition for the change feed in
the transaction that makes the change.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from control.campaigns import (
    get_campaign,
    mark_pending,
    mark_published,
    publish_target,
    raise_archived,
    run_stage,
    save_change,
)
from control.identity import new_id
from control.models import Campaign, User
from control.views import parse_when
from domain.errors import InvalidTransition, PermissionDenied
from domain.lifecycle import CampaignAction, CampaignState, check_action, reject_pause
from domain.schedule import reschedule
from schemas.account import Role
from schemas.campaign import CampaignApproval

__all__ = [
    "approve_campaign",
    "archive_campaign",
    "duplicate_campaign",
    "finish_run",
    "pause_campaign",
    "publish_campaign",
    "reject_campaign",
    "send_for_approval",
    "start_run",
    "stop_campaign",
]

_APPROVER_ROLES = (Role.APPROVER, Role.ADMIN)


def publish_campaign(
    session: Session, actor: User, campaign_id: str, options: CampaignApproval, now: datetime
) -> Campaign:
    """Publish a draft; with the approval workflow on only an approver may, for others' drafts.

    Raises:
        PermissionDenied: the workflow is on and the actor may not approve this campaign.
        ScheduledTimePassed: the scheduled time has passed and `options` give no new one.
    """
    campaign = _checked(session, actor, campaign_id, CampaignAction.PUBLISH)
    if actor.account.approval_workflow:
        _check_approver(actor, campaign, "publish")
    return _publish(session, actor, campaign, options, now, "publish")


def send_for_approval(session: Session, actor: User, campaign_id: str, now: datetime) -> Campaign:
    campaign = _checked(session, actor, campaign_id, CampaignAction.SEND_FOR_APPROVAL)
    from_state = campaign.state
    mark_pending(campaign)
    save_change(session, actor, campaign, "send_for_approval", now, from_state=from_state)
    return campaign


def approve_campaign(
    session: Session, actor: User, campaign_id: str, options: CampaignApproval, now: datetime
) -> Campaign:
    """Approve a pending campaign, which publishes it.

    Raises:
        PermissionDenied: the actor is not an approver, or created the campaign.
        ScheduledTimePassed: the scheduled time has passed and `options` give no new one.
    """
    campaign = _checked(session, actor, campaign_id, CampaignAction.APPROVE)
    _check_approver(actor, campaign, "approve")
    return _publish(session, actor, campaign, options, now, "approve")


def reject_campaign(
    session: Session, actor: User, campaign_id: str, comment: str, now: datetime
) -> Campaign:
    campaign = _checked(session, actor, campaign_id, CampaignAction.REJECT)
    _check_approver(actor, campaign, "reject")
    from_state = campaign.state
    campaign.state = CampaignState.REJECTED.value
    campaign.rejection_comment = comment
    save_change(session, actor, campaign, "reject", now, from_state=from_state, comment=comment)
    return campaign


def stop_campaign(session: Session, actor: User, campaign_id: str, now: datetime) -> Campaign:
    """Stop a published campaign for good; it sends nothing more."""
    campaign = _checked(session, actor, campaign_id, CampaignAction.STOP)
    from_state = campaign.state
    campaign.state = CampaignState.STOPPED.value
    campaign.resume_state = None
    campaign.next_run_at = None
    save_change(session, actor, campaign, "stop", now, from_state=from_state)
    return campaign


def pause_campaign(session: Session, actor: User, campaign_id: str) -> None:
    """Reject the request: campaigns cannot be paused.

    Raises:
        InvalidTransition: always, naming stop as the alternative.
    """
    campaign = get_campaign(session, actor.account_id, campaign_id)
    raise reject_pause(campaign.name, CampaignState(campaign.state))


def duplicate_campaign(session: Session, actor: User, campaign_id: str, now: datetime) -> Campaign:
    """Copy a campaign into a new draft created by `actor`."""
    source = _checked(session, actor, campaign_id, CampaignAction.DUPLICATE)
    copy = Campaign(
        id=new_id("cmp"),
        account_id=source.account_id,
        name=f"Copy of {source.name}"[:200],
        channel=source.channel,
        state=CampaignState.DRAFT.value,
        archived=False,
        who=source.who,
        what=source.what,
        when=source.when,
        delivery=source.delivery,
        live_definition=None,
        created_by=actor.id,
        created_at=now,
        updated_at=now,
        version=1,
        has_started=False,
    )
    copy.labels = list(source.labels)
    session.add(copy)
    save_change(session, actor, copy, "create", now, changes={"duplicate_of": source.id})
    return copy


def archive_campaign(session: Session, actor: User, campaign_id: str, now: datetime) -> Campaign:
    """Hide a campaign that no longer sends from the default campaign list."""
    campaign = _checked(session, actor, campaign_id, CampaignAction.ARCHIVE)
    campaign.archived = True
    save_change(
        session, actor, campaign, "archive", now, changes={"archived": {"from": False, "to": True}}
    )
    return campaign


def start_run(session: Session, actor: User, campaign_id: str, now: datetime) -> Campaign:
    """Record that a scheduled or recurring run has begun."""
    campaign = get_campaign(session, actor.account_id, campaign_id)
    allowed = (CampaignState.SCHEDULED.value, CampaignState.AWAITING_NEXT_RUN.value)
    if campaign.state not in allowed:
        raise InvalidTransition(f"campaign {campaign.name!r} is {campaign.state}; no run can start")
    from_state = campaign.state
    campaign.state = CampaignState.RUNNING.value
    campaign.has_started = True
    campaign.last_run_at = now
    save_change(session, actor, campaign, "start_run", now, from_state=from_state)
    return campaign


def finish_run(
    session: Session, actor: User, campaign_id: str, next_run_at: datetime | None, now: datetime
) -> Campaign:
    """Record that a run ended; the campaign awaits `next_run_at`, or completes if None."""
    campaign = get_campaign(session, actor.account_id, campaign_id)
    if campaign.state != CampaignState.RUNNING.value:
        raise InvalidTransition(f"campaign {campaign.name!r} is {campaign.state}; no run to finish")
    from_state = campaign.state
    if next_run_at is None:
        campaign.state = CampaignState.COMPLETED.value
    else:
        campaign.state = CampaignState.AWAITING_NEXT_RUN.value
    campaign.next_run_at = next_run_at
    save_change(session, actor, campaign, "finish_run", now, from_state=from_state)
    return campaign


def _checked(session: Session, actor: User, campaign_id: str, action: CampaignAction) -> Campaign:
    campaign = get_campaign(session, actor.account_id, campaign_id)
    if campaign.archived and action is not CampaignAction.DUPLICATE:
        raise_archived(campaign)
    check_action(
        action,
        CampaignState(campaign.state),
        run_stage(campaign),
        campaign.name,
        actor.account.approval_workflow,
        published=campaign.live_definition is not None,
    )
    return campaign


def _check_approver(actor: User, campaign: Campaign, verb: str) -> None:
    if actor.role not in _APPROVER_ROLES:
        raise PermissionDenied(
            f"role {actor.role!r} cannot {verb} campaigns while the approval workflow is on; "
            "send the campaign for approval instead"
        )
    if actor.id == campaign.created_by:
        raise PermissionDenied(
            f"you created campaign {campaign.name!r}, so another approver must {verb} it"
        )


def _publish(
    session: Session,
    actor: User,
    campaign: Campaign,
    options: CampaignApproval,
    now: datetime,
    action: str,
) -> Campaign:
    timezone = actor.account.timezone
    when = reschedule(parse_when(campaign.when), options.at, options.run_now, timezone)
    target = publish_target(campaign, when, timezone, now)
    from_state = campaign.state
    changes = {}
    new_when = when.model_dump(mode="json")
    if new_when != campaign.when:
        changes["when"] = {"from": campaign.when, "to": new_when}
        campaign.when = new_when
    mark_published(campaign, target)
    save_change(session, actor, campaign, action, now, changes=changes, from_state=from_state)
    return campaign
