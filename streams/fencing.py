"""Offset commits of the engine's transactions, fenced by the consumer group's generation.

A worker that its group has dropped, paused past its session timeout for example, can
still finish the transaction it had begun: the sends and states of partitions that
another worker owns by then. Kafka aborts such a transaction when its offset commit
names the group generation and the member that read the records (`TxnOffsetCommit`
version 3, from KIP-447), because the group coordinator checks both. aiokafka 0.14 sends
version 0, which names only the group, so the engine's producer commits offsets with
this module's request instead.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiokafka.errors as kafka_errors
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import CoordinationType
from aiokafka.producer.sender import TxnOffsetCommitHandler
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.transaction import TxnOffsetCommitRequest_v0
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)
from aiokafka.structs import OffsetAndMetadata, TopicPartition

__all__ = ["GroupMember", "StaleGroupMember", "fence_offset_commits", "member_of"]

logger = logging.getLogger(__name__)

_TXN_OFFSET_COMMIT = 28
# aiokafka has no class for this error code.
_FENCED_INSTANCE_ID = 82
# Error codes with which the group coordinator rejects a member or generation it does not
# recognise.
_STALE_MEMBER_CODES = frozenset(
    {
        kafka_errors.IllegalGenerationError.errno,
        kafka_errors.UnknownMemberIdError.errno,
        _FENCED_INSTANCE_ID,
    }
)


@dataclass(frozen=True)
class GroupMember:
    """A consumer's place in its group: what a fenced offset commit names."""

    group_id: str
    generation_id: int
    member_id: str


def _error_name(code: int) -> str:
    if code == _FENCED_INSTANCE_ID:
        return "FencedInstanceIdError"
    return kafka_errors.for_code(code).__name__


class StaleGroupMember(kafka_errors.KafkaError):
    """Error of a member that its group has dropped. Its transaction is aborted."""


def member_of(consumer: AIOKafkaConsumer, group_id: str) -> GroupMember:
    """Return the current generation and member id of `consumer` in `group_id`."""
    # aiokafka keeps them on its group coordinator only.
    coordinator = consumer._coordinator
    return GroupMember(group_id, coordinator.generation, coordinator.member_id)


class _TxnOffsetCommitResponseV3(Response):
    API_KEY = _TXN_OFFSET_COMMIT
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("error_code", Int16),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _TxnOffsetCommitRequestV3(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = _TXN_OFFSET_COMMIT
    API_VERSION = 3
    RESPONSE_TYPE = _TxnOffsetCommitResponseV3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("committed_offset", Int64),
                        ("committed_leader_epoch", Int32),
                        ("committed_metadata", CompactString("utf-8")),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _FencedTxnOffsetCommit(Request[TxnOffsetCommitRequest_v0 | _TxnOffsetCommitRequestV3]):
    """The commit request: version 3 where the broker supports it, else version 0 unfenced."""

    API_KEY = _TXN_OFFSET_COMMIT

    def __init__(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        member: GroupMember,
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> None:
        self._transactional_id = transactional_id
        self._producer_id = producer_id
        self._producer_epoch = producer_epoch
        self._member = member
        self._offsets = offsets

    def build(self, request_struct_class: type[Any]) -> Any:
        by_topic: dict[str, list[tuple[int, OffsetAndMetadata]]] = defaultdict(list)
        for tp, offset in sorted(self._offsets.items()):
            by_topic[tp.topic].append((tp.partition, offset))
        if request_struct_class is TxnOffsetCommitRequest_v0:
            return TxnOffsetCommitRequest_v0(
                self._transactional_id,
                self._member.group_id,
                self._producer_id,
                self._producer_epoch,
                [
                    (topic, [(partition, at.offset, at.metadata) for partition, at in items])
                    for topic, items in by_topic.items()
                ],
            )
        # A leader epoch of -1 leaves it unchecked, as aiokafka's own commits do.
        return _TxnOffsetCommitRequestV3(
            self._transactional_id,
            self._member.group_id,
            self._producer_id,
            self._producer_epoch,
            self._member.generation_id,
            self._member.member_id,
            None,
            [
                (
                    topic,
                    [(partition, at.offset, -1, at.metadata, {}) for partition, at in items],
                    {},
                )
                for topic, items in by_topic.items()
            ],
            {},
        )


@dataclass(frozen=True)
class _Version0View:
    """A version 3 response in the shape that aiokafka's handler reads."""

    errors: list[tuple[str, list[tuple[int, int]]]]


class _FencedCommitHandler(TxnOffsetCommitHandler):
    def __init__(
        self,
        sender: Any,
        offsets: dict[TopicPartition, OffsetAndMetadata],
        member: GroupMember,
    ) -> None:
        super().__init__(sender, offsets, member.group_id)
        self._member = member

    def create_request(self) -> _FencedTxnOffsetCommit:
        txn_manager = self._sender._txn_manager
        return _FencedTxnOffsetCommit(
            txn_manager.transactional_id,
            txn_manager.producer_id,
            txn_manager.producer_epoch,
            self._member,
            self._offsets,
        )

    def handle_response(self, resp: Any) -> float | None:
        if resp.API_VERSION < 3:
            return super().handle_response(resp)  # type: ignore[no-any-return]
        errors = [
            (topic, [(partition, code) for partition, code, _tags in partitions])
            for topic, partitions, _tags in resp.topics
        ]
        for _topic, partitions in errors:
            for _partition, code in partitions:
                if code in _STALE_MEMBER_CODES:
                    self._stale(_error_name(code))
                    return None
        # Other error codes mean the same as in version 0, so aiokafka's handler retries,
        # fails or records them as usual.
        return super().handle_response(_Version0View(errors))  # type: ignore[no-any-return]

    def _stale(self, answer: str) -> None:
        member = self._member
        logger.warning(
            "engine transaction aborted: its group has moved on without this worker",
            extra={
                "group_id": member.group_id,
                "generation": member.generation_id,
                "member_id": member.member_id,
                "answer": answer,
            },
        )
        _fail_transaction(
            self._sender._txn_manager,
            StaleGroupMember(
                f"group {member.group_id!r} no longer has member {member.member_id!r} in "
                f"generation {member.generation_id} ({answer}); another worker owns its "
                "partitions now"
            ),
        )


def _fail_transaction(txn_manager: Any, error: Exception) -> None:
    """Make the transaction in progress abortable with `error`, which its commit raises."""
    txn_manager.error_transaction(error)
    # aiokafka also sets the error on a future that nothing awaits once the transaction
    # is aborted, and asyncio would log it as never retrieved.
    txn_manager.wait_for_transaction_end().exception()


def fence_offset_commits(producer: AIOKafkaProducer, member: Callable[[], GroupMember]) -> None:
    """Make `producer`'s transactions commit offsets as the group member that `member` gives.

    `member` is called when the commit is sent. The engine passes its consumer's place
    (`member_of`), so a consumer that the group dropped while the transaction ran names
    the generation it read the records in, which the group coordinator rejects.
    """
    sender = producer._sender
    txn_manager = sender._txn_manager

    async def commit_offsets(
        offsets: dict[TopicPartition, OffsetAndMetadata], group_id: str
    ) -> None:
        if not offsets:
            return
        current = member()
        if current.group_id != group_id or current.generation_id < 0:
            # aiokafka resets the generation to -1 when the group coordinator reports the
            # member as unknown.
            logger.warning(
                "engine transaction aborted: its group has moved on without this worker",
                extra={
                    "group_id": group_id,
                    "member_id": current.member_id,
                    "answer": "the consumer's generation was reset",
                },
            )
            _fail_transaction(
                txn_manager,
                StaleGroupMember(f"the engine is not a member of group {group_id!r} any more"),
            )
            return
        try:
            node_id = await sender._find_coordinator(CoordinationType.GROUP, group_id)
        except kafka_errors.GroupAuthorizationFailedError as error:
            logger.error(
                "engine transaction aborted: not authorised for group %s",
                group_id,
                extra={"group_id": group_id},
            )
            _fail_transaction(txn_manager, error)
            return
        await _FencedCommitHandler(sender, offsets, current).do(node_id)

    sender._do_txn_offset_commit = commit_offsets
