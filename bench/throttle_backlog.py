"""The cost to the engine of a queue of messages held by a throttle, without Kafka.

    python -m bench.throttle_backlog                  # 1,000 and 10,000 held, throttle 1
    python -m bench.throttle_backlog --held 2000 --throttle 100

N users trigger one campaign within one second, so all but the throttle's first slot are
held. The queue then drains in two ways: the watermark jumps past the last slot at once,
as at the end of a replay or after downtime, and the watermark walks one slot at a time,
as live traffic moves it. The baseline is the same N messages without a throttle, decided
at once, in the same run. The ratio is how many baseline decisions one held message
costs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bench.measurement import cpu_model, progress_bar
from domain.engine import CampaignSet, EngineRules, PartitionEngine, compile_campaigns
from schemas.campaign import CampaignCreate
from schemas.envelope import format_timestamp

_START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
_NOW = datetime(2026, 12, 1, tzinfo=UTC)
_SLOT_US = 300 * 1_000_000


@dataclass(frozen=True)
class _Run:
    name: str
    held: int
    cpu_s: float
    sends: int


def main(
    held: Annotated[
        list[int] | None, typer.Option(help="Messages to hold; repeat for several runs.")
    ] = None,
    throttle: Annotated[int, typer.Option(min=1, help="Messages per 5 minutes.")] = 1,
) -> None:
    """Time the draining of a throttle's queue against the same sends unthrottled."""
    counts = held or [1_000, 10_000]
    console = Console(width=120)
    console.print(f"{cpu_model()}; throttle {throttle} per 5 minutes")
    table = Table(title="Messages held by a throttle, pure engine")
    for column in ("run", "messages", "CPU s", "sends", "µs per message", "× baseline"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for count in counts:
        baseline = _drain(count, None, jump=True)
        for run in (_drain(count, throttle, jump=True), _drain(count, throttle, jump=False)):
            runs = (baseline, run) if run.name.startswith("jump") else (run,)
            for measured in runs:
                ratio = (measured.cpu_s / measured.sends) / (baseline.cpu_s / baseline.sends)
                table.add_row(
                    measured.name,
                    f"{count:,}",
                    f"{measured.cpu_s:.2f}",
                    f"{measured.sends:,}",
                    f"{measured.cpu_s / max(measured.sends, 1) * 1e6:,.0f}",
                    f"{ratio:.1f}",
                )
    console.print(table)


def _drain(count: int, throttle: int | None, jump: bool) -> _Run:
    campaigns = _campaigns(throttle)
    engine = PartitionEngine(0, EngineRules())
    users = [f"user-{n:06d}" for n in range(count)]
    engine.process([_identify(user) for user in users], campaigns, _NOW)
    started_s = time.process_time()
    triggers = [_event(user, _START + timedelta(seconds=1)) for user in users]
    sends = len(engine.process(triggers, campaigns, _NOW).sends)
    first_slot_us = int(_START.timestamp()) * 1_000_000
    # Enough slots to drain the queue, and one more.
    slots = count // (throttle or count) + 2
    if jump:
        sends += len(engine.advance(first_slot_us + slots * _SLOT_US, campaigns, _NOW).sends)
    else:
        with progress_bar(f"Walking {slots:,} slots", slots) as advance:
            for slot in range(1, slots + 1):
                moved = engine.advance(first_slot_us + slot * _SLOT_US, campaigns, _NOW)
                sends += len(moved.sends)
                advance(slot)
    cpu_s = time.process_time() - started_s
    if throttle is None:
        name = "baseline, no throttle"
    else:
        name = "jump past the queue" if jump else "walk one slot at a time"
    return _Run(name, count, cpu_s, sends)


def _campaigns(throttle: int | None) -> CampaignSet:
    delivery = {"throttle": {"max_per_5_minutes": throttle}} if throttle else {}
    body = CampaignCreate.model_validate(
        {
            "name": "Payment problem",
            "channel": "push",
            "what": {
                "variants": [
                    {
                        "name": "A",
                        "weight": 100,
                        "message": {"channel": "push", "title": "Hi", "body": "Your payment"},
                    }
                ]
            },
            "when": {"type": "event", "event": "Payment Failed"},
            "delivery": delivery,
        }
    ).model_dump(mode="json")
    entry = {"state": "running", "timezone": "UTC", "name": body["name"], "live_definition": body}
    return compile_campaigns({"payment": entry}, {})


def _event(user: str, at: datetime) -> dict[str, Any]:
    return {
        "message_id": f"{user}-{at.timestamp()}",
        "type": "track",
        "event": "Payment Failed",
        "user_id": user,
        "anonymous_id": None,
        "timestamp": format_timestamp(at),
        "received_at": format_timestamp(at),
        "properties": {},
        "traits": {},
    }


def _identify(user: str) -> dict[str, Any]:
    return {
        **_event(user, _START),
        "message_id": f"{user}-identify",
        "type": "identify",
        "event": None,
        "traits": {"push_token": f"token-{user}"},
    }


if __name__ == "__main__":
    typer.run(main)
