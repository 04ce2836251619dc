"""The reference dataset and the example campaigns as the engine reads them, without Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from herald.replay import read_ecom_csv
from schemas.campaign import CampaignCreate
from schemas.envelope import EventLimits
from schemas.segment import envelope_from_segment
from streams.producer import partition_for

ROOT = Path(__file__).resolve().parents[3]
ECOM_CSV = ROOT / "examples" / "data" / "ecom.csv.gz"
EXAMPLE_CAMPAIGNS = sorted((ROOT / "examples" / "campaigns").glob("*.yaml"))
PARTITIONS = 4


def catalog_entry(create: CampaignCreate, state: str = "running") -> dict[str, Any]:
    """Return a campaign as the control plane publishes it once it is live."""
    body = create.model_dump(mode="json")
    return {"state": state, "timezone": "UTC", "live_definition": body, "name": body["name"]}


def example_catalog() -> dict[str, dict[str, Any]]:
    """The three example campaigns by id, their file names standing in for ids."""
    return {
        path.stem: catalog_entry(CampaignCreate.model_validate(yaml.safe_load(path.read_text())))
        for path in EXAMPLE_CAMPAIGNS
    }


def ecom_envelopes_by_partition() -> dict[int, list[dict[str, Any]]]:
    """Read the CSV as the replay sends it, in send order, split by user partition.

    Each envelope is received one second after its time, as a fast replay of history is.
    """
    partitions: dict[int, list[dict[str, Any]]] = {p: [] for p in range(PARTITIONS)}
    limits = EventLimits()
    for envelope in _envelopes(limits):
        key = envelope["user_id"] or envelope["anonymous_id"]
        partitions[partition_for(key, PARTITIONS)].append(envelope)
    return partitions


def _envelopes(limits: EventLimits) -> Iterator[dict[str, Any]]:
    for message in read_ecom_csv(ECOM_CSV):
        moment = datetime.fromisoformat(message["timestamp"]).astimezone(UTC)
        yield envelope_from_segment(message, moment + timedelta(seconds=1), limits)
