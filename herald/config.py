"""Typed settings for every Herald process.

Settings come from `HERALD_…` environment variables (nested with `__`, for example
`HERALD_KAFKA__BOOTSTRAP_SERVERS`) or from a `.env` file. They are validated once at
start-up and passed into the parts that need them; no other module reads `os.environ`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.delivery import GlobalFrequencyCaps

__all__ = [
    "ApiSettings",
    "BrokerSettings",
    "CleverTapAccount",
    "EngineSettings",
    "HeraldSettings",
    "IngestSettings",
    "KafkaSettings",
    "LandingSettings",
    "setting_errors",
]


class KafkaSettings(BaseModel, frozen=True):
    """Kafka connection settings and the names of Herald's topics."""

    bootstrap_servers: str = "127.0.0.1:19092"
    events_topic: str = "events"
    rejected_topic: str = "events.rejected"
    campaigns_topic: str = "campaigns"
    # Send commands go to `<sends_topic_prefix><channel>`, one topic per channel.
    sends_topic_prefix: str = "sends."
    # The engine's per-user state, compacted; it has the events topic's partitions.
    engine_state_topic: str = "engine.state"
    # Members of scheduled runs, each in the partition of its user.
    engine_runs_topic: str = "engine.runs"
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
    # How long the API waits for Kafka's acknowledgement before it responds with 503. The
    # write may still complete, and the client's retry is then dropped as a copy.
    send_timeout_s: float = Field(default=10.0, gt=0)


class BrokerSettings(BaseModel, frozen=True):
    """The single-node development broker that `herald kafka start` runs from Maven jars."""

    home: Path = Path(".herald/kafka")
    port: int = Field(default=19092, ge=1, le=65535)
    controller_port: int = Field(default=19093, ge=1, le=65535)
    heap_mb: int = Field(default=512, ge=128)
    start_timeout_s: float = Field(default=90.0, gt=0)
    stop_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("controller_port")
    @classmethod
    def _own_controller_port(cls, value: int, info: ValidationInfo) -> int:
        # Kafka's storage tool would reject it only with a Java stack trace.
        if value == info.data.get("port"):
            raise ValueError("must differ from HERALD_BROKER__PORT")
        return value


class CleverTapAccount(BaseModel, frozen=True):
    """Credentials that CleverTap's upload API sends as headers."""

    account_id: str
    passcode: SecretStr


class IngestSettings(BaseModel, frozen=True):
    """Ingest credentials, and the limits every event and batch must respect."""

    write_keys: tuple[SecretStr, ...] = (SecretStr("herald-dev-write-key"),)
    clevertap_accounts: tuple[CleverTapAccount, ...] = (
        CleverTapAccount(account_id="HERALD-DEV", passcode=SecretStr("herald-dev-passcode")),
    )
    max_event_bytes: int = Field(default=32 * 1024, gt=0)
    max_batch_bytes: int = Field(default=500 * 1024, gt=0)
    max_batch_events: int = Field(default=1000, gt=0)
    max_clevertap_records: int = Field(default=1000, gt=0)
    max_future_skew_s: float = Field(default=24 * 3600, ge=0)
    max_properties: int = Field(default=255, gt=0)
    max_key_chars: int = Field(default=120, gt=0)
    max_string_chars: int = Field(default=8192, gt=0)
    max_nesting_depth: int = Field(default=5, gt=0)


class LandingSettings(BaseModel, frozen=True):
    """Location, file boundaries and deduplication of the Parquet landing."""

    data_dir: Path = Path("data")
    group_id: str = "herald-landing"
    flush_records: int = Field(default=5000, gt=0)
    flush_interval_s: float = Field(default=2.0, gt=0)
    dedup_window_s: float = Field(default=7 * 24 * 3600, gt=0)
    profile_snapshot_interval_s: float = Field(default=5.0, gt=0)


def _iana_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone such as Europe/Berlin") from None
    return name


class EngineSettings(BaseModel, frozen=True):
    """The real-time engine: consumer group, transactions and event-time rules.

    `idle_watermark_s`: a partition without records for this long moves its event-time
    watermark on, so windows close when traffic stops. A watermark within `max_lateness_s`
    of the wall clock moves up to it. One further behind, from a replay of history, moves
    on by the time that passes.
    `transactional_id`: unique per worker, and stable across its restarts, so that a
    restarted worker aborts the transaction its predecessor left open. By default it is
    derived from the group, the host name and `worker_web_port`.
    `timezone`: the IANA time zone for campaigns published without their account's zone;
    every campaign the control plane publishes carries its account's.
    """

    enabled: bool = True
    group_id: str = "herald-engine"
    transactional_id: str | None = None
    idle_watermark_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    max_lateness_s: float = Field(default=2 * 3600, ge=0, allow_inf_nan=False)
    max_future_s: float = Field(default=120, ge=0, allow_inf_nan=False)
    timezone: Annotated[str, AfterValidator(_iana_zone)] = "UTC"
    frequency_caps: GlobalFrequencyCaps = GlobalFrequencyCaps()
    control_group_percent: int | None = Field(default=None, ge=2, le=5)
    max_poll_records: int = Field(default=500, gt=0)
    # The engine's own transactions on the events topic make a read_committed fetch wait
    # its whole allowance for new records, so a short allowance keeps the latency low.
    fetch_max_wait_ms: int = Field(default=10, ge=0, le=500)
    # A fetch returns once this many bytes are ready, or after `fetch_max_wait_ms`. Under
    # load, fewer and larger polls mean fewer transactions, each with a fixed cost: at
    # 10,000 events/s the engine used about 55% of a core instead of 70%
    # (`python -m bench.triggers`, 2-core VM).
    fetch_min_bytes: int = Field(default=64 * 1024, ge=1)
    # How often the leader worker looks for due runs of scheduled campaigns.
    scheduler_interval_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    transaction_timeout_s: float = Field(default=20.0, ge=1, allow_inf_nan=False)
    # A worker that sends no heartbeat for this long leaves the engine's group, and its
    # partitions move to the others. The bounds are those that Kafka brokers accept by
    # default (`group.min.session.timeout.ms`, `group.max.session.timeout.ms`).
    session_timeout_s: float = Field(default=10.0, ge=6, le=1800, allow_inf_nan=False)


class ApiSettings(BaseModel, frozen=True):
    """The HTTP server."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)


class HeraldSettings(BaseSettings):
    """All of Herald's settings, read from `HERALD_…` variables at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="HERALD_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    ingest: IngestSettings = IngestSettings()
    landing: LandingSettings = LandingSettings()
    engine: EngineSettings = EngineSettings()
    api: ApiSettings = ApiSettings()
    worker_id: str = "herald-worker"
    worker_web_port: int = Field(default=6066, ge=1, le=65535)
    store: str = "rocksdb://"
    state_dir: Path = Path(".herald/state")
    control_db_url: str = "sqlite:///.herald/control.db"
    # Publish control-plane changes to `kafka.campaigns_topic`; off only where no worker
    # reads them, such as tests of the API alone.
    control_feed: bool = True
    log_format: str = Field(default="text", pattern="^(text|json)$")


# Settings whose values may carry credentials, so an error never repeats them.
_SECRET_WORDS = ("KEY", "PASSCODE", "SECRET", "TOKEN", "PASSWORD", "URL", "ACCOUNTS")


def setting_errors(error: ValidationError) -> list[str]:
    """Describe each invalid setting of `error` by its environment variable and value."""
    prefix = HeraldSettings.model_config.get("env_prefix", "")
    delimiter = HeraldSettings.model_config.get("env_nested_delimiter") or "__"
    lines = []
    for problem in error.errors():
        # A problem inside a JSON value, such as a list item, is named by its setting.
        names = [str(part) for part in problem["loc"] if isinstance(part, str)]
        variable = prefix + delimiter.join(names).upper()
        if any(word in variable for word in _SECRET_WORDS):
            lines.append(f"invalid {variable}: {problem['msg']}")
        else:
            lines.append(f"invalid {variable}={problem['input']!r}: {problem['msg']}")
    return lines
