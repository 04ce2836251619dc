"""Replay a file of events through Herald's HTTP API: readers turn files into messages,
senders deliver them."""

from herald.replay.errors import (
    ApiUnreachableError,
    CredentialsRejectedError,
    ReplayError,
    ReplayFileError,
)
from herald.replay.readers import (
    Message,
    MessageIterator,
    ReplayFormat,
    contact_traits,
    read_clevertap_records,
    read_ecom_csv,
    read_events,
    read_segment_jsonl,
)
from herald.replay.senders import (
    CleverTapSender,
    ReplaySender,
    SegmentSender,
    SendOptions,
    SendReport,
    check_api,
)

__all__ = [
    "ApiUnreachableError",
    "CleverTapSender",
    "CredentialsRejectedError",
    "Message",
    "MessageIterator",
    "ReplayError",
    "ReplayFileError",
    "ReplayFormat",
    "ReplaySender",
    "SegmentSender",
    "SendOptions",
    "SendReport",
    "check_api",
    "contact_traits",
    "read_clevertap_records",
    "read_ecom_csv",
    "read_events",
    "read_segment_jsonl",
]
