"""The Faust application: one per worker process, configured from Herald's settings."""

from __future__ import annotations

import faust

from herald.config import HeraldSettings

__all__ = ["create_faust_app", "events_topic"]


def create_faust_app(settings: HeraldSettings) -> faust.App:
    """Build a Faust app whose consumer group is `settings.worker_id`.

    Values stay raw bytes: envelopes are decoded in batches by the agents, which is much
    cheaper than Faust's per-record codec.
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.worker_id,
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store=settings.store,
        datadir=str(settings.state_dir),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        # Standby replicas double the changelog reads for no benefit on one worker.
        table_standby_replicas=0,
        producer_acks=-1,
        # A killed worker's partitions move to the others after this many seconds.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )


def events_topic(app: faust.App, settings: HeraldSettings) -> faust.TopicT:
    """Return the events topic as a Faust topic. It must already exist with its partitions."""
    return app.topic(
        settings.kafka.events_topic,
        partitions=settings.kafka.partitions,
        value_serializer="raw",
        key_serializer="raw",
    )
