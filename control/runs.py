"""Runs of one-time and recurring campaigns, as the scheduler records them.

A run moves its campaign from scheduled (or awaiting its next run) to running, and when
its members are written, to awaiting the next run or completed. Each step is committed
with an audit entry by the actor `scheduler` and queued for the campaigns topic, like
every other change.

A date-property campaign stays running and has a run every day at its local time, for the
users whose date comes `days_before` days later.

A run is named by its campaign and the instant it was due (`last_run_at`). A scheduler that
crashes mid-run finds the campaign still running and writes the same run again, and the
engine's ledger drops the members it has already decided.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control.campaigns import save_change
from control.models import Account, Campaign
from control.views import parse_when
from domain.lifecycle import CampaignState
from domain.schedule import first_run_at, is_triggered, next_date_run_after, next_run_after
from schemas.campaign import DatePropertyTrigger, OneTimeNow, RecurringSchedule, When
from schemas.envelope import format_timestamp

__all__ = [
    "SCHEDULER_ACTOR",
    "DueRun",
    "begin_run",
    "complete_ended",
    "due_runs",
    "end_run",
    "run_id_of",
    "start_triggered",
]

SCHEDULER_ACTOR = "scheduler"
_RUN_STATES = (
    CampaignState.SCHEDULED.value,
    CampaignState.RUNNING.value,
    CampaignState.AWAITING_NEXT_RUN.value,
)


@dataclass(frozen=True, slots=True)
class DueRun:
    """A run whose time has come; `definition` is the published campaign."""

    campaign_id: str
    account_id: str
    timezone: str
    run_at: datetime
    definition: dict[str, Any]

    @property
    def run_id(self) -> str:
        return run_id_of(self.campaign_id, self.run_at)


@dataclass(frozen=True, slots=True)
class _SchedulerActor:
    """Stands in for a user in the audit log and the feed record."""

    account_id: str
    account: Account
    id: str = SCHEDULER_ACTOR


def run_id_of(campaign_id: str, run_at: datetime) -> str:
    return f"{campaign_id}@{format_timestamp(run_at)}"


def due_runs(session: Session, now: datetime) -> list[DueRun]:
    """Return the runs due at `now`, oldest first.

    A running campaign that is not triggered is a run that has not finished (or a
    one-time campaign published to run now): it is due again at the same instant.
    """
    campaigns = session.scalars(
        select(Campaign).where(
            Campaign.state.in_(_RUN_STATES),
            Campaign.archived.is_(False),
            Campaign.live_definition.is_not(None),
        )
    ).all()
    due: list[DueRun] = []
    for campaign in campaigns:
        definition = campaign.live_definition or {}
        when = parse_when(definition["when"])
        if is_triggered(when) and not isinstance(when, DatePropertyTrigger):
            continue
        account = session.get_one(Account, campaign.account_id)
        run_at = _due_at(campaign, when, account.timezone, now)
        if run_at is not None and run_at <= now:
            run_at = run_at.astimezone(UTC)
            due.append(
                DueRun(campaign.id, campaign.account_id, account.timezone, run_at, definition)
            )
    return sorted(due, key=lambda run: (run.run_at, run.campaign_id))


def start_triggered(session: Session, now: datetime) -> list[str]:
    """Mark running the triggered campaigns whose `start_at` has come; return their ids.

    The engine reacts to them from `start_at` on in any case; this keeps the state that
    people see in step.
    """
    started = []
    for campaign, when in _published_triggered(session, CampaignState.SCHEDULED):
        if when.start_at is not None and when.start_at > now:
            continue
        campaign.state = CampaignState.RUNNING.value
        campaign.has_started = True
        save_change(
            session,
            _actor(session, campaign),
            campaign,
            "start",
            now,
            from_state=CampaignState.SCHEDULED.value,
        )
        started.append(campaign.id)
    return started


def complete_ended(session: Session, now: datetime, grace: timedelta) -> list[str]:
    """Mark completed the triggered campaigns whose `end_at` passed more than `grace` ago;
    return their ids.

    The engine sends nothing for events after `end_at` in any case. The grace is the
    lateness the engine accepts, so that an event from before the end that arrives late
    still triggers, as it would have on time.
    """
    completed = []
    states = (CampaignState.SCHEDULED, CampaignState.RUNNING)
    for campaign, when in _published_triggered(session, *states):
        if when.end_at is None or when.end_at + grace > now:
            continue
        from_state = campaign.state
        campaign.state = CampaignState.COMPLETED.value
        save_change(
            session, _actor(session, campaign), campaign, "complete", now, from_state=from_state
        )
        completed.append(campaign.id)
    return completed


def _published_triggered(
    session: Session, *states: CampaignState
) -> Iterator[tuple[Campaign, When]]:
    """Yield the published, unarchived triggered campaigns in `states`, with their `when`."""
    campaigns = session.scalars(
        select(Campaign).where(
            Campaign.state.in_([state.value for state in states]),
            Campaign.archived.is_(False),
            Campaign.live_definition.is_not(None),
        )
    ).all()
    for campaign in campaigns:
        when = parse_when((campaign.live_definition or {})["when"])
        if is_triggered(when):
            yield campaign, when


def _due_at(campaign: Campaign, when: Any, timezone: str, now: datetime) -> datetime | None:
    if isinstance(when, DatePropertyTrigger):
        # Live for good: `next_run_at` is the run in progress or the next one.
        if campaign.state != CampaignState.RUNNING.value:
            return None
        return campaign.next_run_at or next_date_run_after(when, timezone, campaign.updated_at)
    if campaign.state == CampaignState.RUNNING.value:
        return campaign.last_run_at or now
    if campaign.state == CampaignState.AWAITING_NEXT_RUN.value:
        return campaign.next_run_at
    if isinstance(when, OneTimeNow):
        return now
    # None for a schedule without any run left: it is never due.
    return first_run_at(when, timezone)


def begin_run(session: Session, run: DueRun, now: datetime) -> None:
    """Mark the campaign running with `run` as its current run, and commit."""
    campaign = session.get_one(Campaign, run.campaign_id)
    if (
        campaign.state == CampaignState.RUNNING.value
        and campaign.last_run_at == run.run_at
        and campaign.next_run_at == run.run_at
    ):
        return
    from_state = campaign.state
    campaign.state = CampaignState.RUNNING.value
    campaign.has_started = True
    campaign.last_run_at = run.run_at
    # Until the run ends, the run in progress is the next one to do.
    campaign.next_run_at = run.run_at
    save_change(
        session,
        _actor(session, campaign),
        campaign,
        "start_run",
        now,
        from_state=from_state,
        changes={"run_id": run.run_id, "members": None},
    )


def end_run(
    session: Session, run: DueRun, now: datetime, members: int, refused: str | None = None
) -> datetime | None:
    """Record the end of `run` and return the next run's time, None when it was the last.

    `refused` explains a run that sent nothing because of a safety check; it goes into the
    audit entry.
    """
    campaign = session.get_one(Campaign, run.campaign_id)
    when = parse_when(run.definition["when"])
    next_at = None
    after = max(run.run_at, now)
    if isinstance(when, RecurringSchedule):
        next_at = next_run_after(when, run.timezone, after)
    elif isinstance(when, DatePropertyTrigger):
        next_at = next_date_run_after(when, run.timezone, after)
    # In UTC: Python never finds a local time in a repeated or skipped hour equal to the
    # same instant in another zone.
    next_at = next_at.astimezone(UTC) if next_at else None
    from_state = campaign.state
    if isinstance(when, DatePropertyTrigger):
        campaign.state = CampaignState.RUNNING.value if next_at else CampaignState.COMPLETED.value
    else:
        campaign.state = (
            CampaignState.AWAITING_NEXT_RUN.value if next_at else CampaignState.COMPLETED.value
        )
    campaign.next_run_at = next_at
    save_change(
        session,
        _actor(session, campaign),
        campaign,
        "finish_run",
        now,
        from_state=from_state,
        changes={"run_id": run.run_id, "members": members},
        comment=refused,
    )
    return next_at


def _actor(session: Session, campaign: Campaign) -> Any:
    return _SchedulerActor(campaign.account_id, session.get_one(Account, campaign.account_id))
