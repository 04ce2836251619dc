from __future__ import annotations

import gzip
import json
import re

import pytest

from herald.replay import (
    ReplayFileError,
    ReplayFormat,
    contact_traits,
    read_clevertap_records,
    read_ecom_csv,
    read_events,
    read_segment_jsonl,
)

# ---------------------------------------------------------------------------- ecom-csv


def test_ecom_sorts_by_time_keeping_file_order(write_ecom_csv):
    path = write_ecom_csv(
        [
            "u1,s1,home,2024-01-01 10:00:05,web,email,2024-01,new",
            "u1,s1,cart,2024-01-01 10:00:05,web,email,2024-01,new",
            "u2,s2,search,2024-01-01 10:00:01,ios,ads,2024-01,new",
            "u2,s2,home,2024-01-01 10:00:05,ios,ads,2024-01,new",
        ]
    )

    ids = [m["messageId"] for m in read_ecom_csv(path)]

    assert ids == [
        "ecom-2-identify",
        "ecom-2-track",
        "ecom-0-identify",
        "ecom-0-track",
        "ecom-1-track",
        "ecom-3-track",
    ]


def test_ecom_track_fields(write_ecom_csv):
    path = write_ecom_csv(["u1,s1,home,2024-03-13 10:21:14,desktop,email,2024-01,returning"])

    track = list(read_ecom_csv(path))[1]

    assert track == {
        "type": "track",
        "messageId": "ecom-0-track",
        "userId": "u1",
        "event": "home",
        "timestamp": "2024-03-13T10:21:14+00:00",
        "properties": {"session_id": "s1", "platform": "desktop"},
    }


def test_ecom_first_identify_has_contact_traits(write_ecom_csv):
    path = write_ecom_csv(["user_0042,s1,home,2024-03-13 10:21:14,desktop,email,2024-01,new"])

    identify = next(read_ecom_csv(path))

    assert identify == {
        "type": "identify",
        "messageId": "ecom-0-identify",
        "userId": "user_0042",
        "timestamp": "2024-03-13T10:21:14+00:00",
        "traits": {
            "platform": "desktop",
            "acquisition_channel": "email",
            "user_cohort": "2024-01",
            "user_lifecycle": "new",
            "email": "user_0042@example.com",
            "phone": "+15550000042",
            "push_token": "push-user_0042",
        },
    }


def test_ecom_identify_when_traits_change(write_ecom_csv):
    path = write_ecom_csv(
        [
            "u1,s1,home,2024-01-01 10:00:00,web,email,2024-01,new",
            "u1,s1,cart,2024-01-01 10:01:00,web,email,2024-01,new",
            "u1,s2,home,2024-02-01 10:00:00,web,email,2024-01,returning",
            "u1,s3,home,2024-03-01 10:00:00,ios,email,2024-01,returning",
            "u1,s3,cart,2024-03-01 10:02:00,ios,email,2024-01,returning",
        ]
    )

    messages = list(read_ecom_csv(path))

    assert [m["messageId"] for m in messages] == [
        "ecom-0-identify",
        "ecom-0-track",
        "ecom-1-track",
        "ecom-2-identify",
        "ecom-2-track",
        "ecom-3-identify",
        "ecom-3-track",
        "ecom-4-track",
    ]
    assert messages[3]["traits"] == {
        "platform": "web",
        "acquisition_channel": "email",
        "user_cohort": "2024-01",
        "user_lifecycle": "returning",
    }
    assert messages[3]["timestamp"] == "2024-02-01T10:00:00+00:00"
    assert messages[5]["traits"]["platform"] == "ios"


def test_ecom_total(write_ecom_csv):
    path = write_ecom_csv(
        [
            "u1,s1,home,2024-01-01 10:00:00,web,email,2024-01,new",
            "u1,s1,cart,2024-01-01 10:01:00,web,email,2024-01,returning",
            "u2,s2,home,2024-01-01 10:02:00,web,email,2024-01,new",
        ]
    )

    messages = read_ecom_csv(path)

    assert messages.total == 6
    assert len(list(messages)) == 6


def test_ecom_duplicate_rows_are_distinct_events(write_ecom_csv):
    row = "u1,s1,home,2024-01-01 10:00:00,web,email,2024-01,new"
    path = write_ecom_csv([row, row])

    tracks = [m for m in read_ecom_csv(path) if m["type"] == "track"]

    assert [t["messageId"] for t in tracks] == ["ecom-0-track", "ecom-1-track"]


def test_ecom_ids_repeat_across_reads(write_ecom_csv):
    path = write_ecom_csv(
        [
            "u1,s1,home,2024-01-01 10:00:00,web,email,2024-01,new",
            "u2,s2,home,2024-01-01 09:00:00,web,email,2024-01,new",
        ]
    )

    assert list(read_ecom_csv(path)) == list(read_ecom_csv(path))


def test_ecom_reads_gzip(tmp_path):
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wt") as stream:
        stream.write("user_id,session_id,event,timestamp,platform,acquisition_channel,")
        stream.write("user_cohort,user_lifecycle\n")
        stream.write("u1,s1,home,2024-01-01 10:00:00,web,email,2024-01,new\n")

    assert [m["type"] for m in read_ecom_csv(path)] == ["identify", "track"]


def test_ecom_missing_column(write_ecom_csv):
    path = write_ecom_csv(
        ["u1,s1,home,2024-01-01 10:00:00"], header="user_id,session_id,event,timestamp"
    )

    with pytest.raises(ReplayFileError) as raised:
        read_ecom_csv(path)

    assert str(raised.value) == (
        f"{path} has no column platform, acquisition_channel, user_cohort, user_lifecycle; "
        "an ecom-csv file needs the columns user_id, session_id, event, timestamp, platform, "
        "acquisition_channel, user_cohort, user_lifecycle"
    )


def test_ecom_invalid_timestamp(write_ecom_csv):
    path = write_ecom_csv(
        [
            "u1,s1,home,2024-01-01 10:00:00,web,email,2024-01,new",
            "u1,s1,home,01/02/2024 10:00,web,email,2024-01,new",
        ]
    )

    with pytest.raises(ReplayFileError) as raised:
        read_ecom_csv(path)

    assert str(raised.value) == (
        f"{path}, data row 1: timestamp '01/02/2024 10:00' is not in the form "
        "YYYY-MM-DD HH:MM:SS (UTC)"
    )


def test_ecom_empty_user_id(write_ecom_csv):
    path = write_ecom_csv([",s1,home,2024-01-01 10:00:00,web,email,2024-01,new"])

    with pytest.raises(ReplayFileError) as raised:
        read_ecom_csv(path)

    assert str(raised.value) == f"{path}, data row 0: user_id is empty; every row needs one"


def test_ecom_missing_file(tmp_path):
    path = tmp_path / "absent.csv"

    with pytest.raises(ReplayFileError, match=r"^cannot read .*absent\.csv as CSV: "):
        read_ecom_csv(path)


def test_contact_traits_hash_fallback():
    traits = contact_traits("alice")

    assert traits == contact_traits("alice")
    assert re.fullmatch(r"\+1555\d{7}", traits["phone"])
    assert traits["email"] == "alice@example.com"
    assert traits["push_token"] == "push-alice"


def test_contact_traits_long_number_uses_hash():
    phone = contact_traits("user_123456789")["phone"]

    assert re.fullmatch(r"\+1555\d{7}", phone)


# ----------------------------------------------------------------------- segment-jsonl


def test_segment_lines_pass_through(write_lines):
    messages = [
        {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m1"},
        {"type": "identify", "anonymousId": "a1", "traits": {"plan": "pro"}, "messageId": "m2"},
        {"type": "alias", "userId": "u1", "previousId": "a1", "messageId": "m3"},
        {"type": "group", "userId": "u1", "groupId": "g1", "messageId": "m4"},
        {"type": "page", "userId": "u1", "name": "Home", "messageId": "m5"},
        {"type": "screen", "userId": "u1", "name": "Cart", "messageId": "m6"},
    ]
    path = write_lines(messages)

    assert list(read_segment_jsonl(path)) == messages


def test_segment_total_known_up_front(write_lines):
    path = write_lines([{"type": "track", "userId": "u1", "event": "Viewed"}])

    assert read_segment_jsonl(path).total == 1


def test_segment_sent_in_time_order(write_lines):
    def track(message_id: str, timestamp: str | None) -> dict[str, object]:
        message = {"type": "track", "userId": "u1", "event": "E", "messageId": message_id}
        return message if timestamp is None else {**message, "timestamp": timestamp}

    path = write_lines(
        [
            track("late", "2024-03-13T12:00:00+02:00"),
            track("unstamped", None),
            track("naive", "2024-03-13T09:30:00"),
            track("early", "2024-03-13T09:00:00Z"),
            track("same-as-late", "2024-03-13T10:00:00Z"),
        ]
    )

    ids = [m["messageId"] for m in read_segment_jsonl(path)]

    assert ids == ["early", "naive", "late", "same-as-late", "unstamped"]


def test_segment_derived_ids(write_lines):
    line = {"type": "track", "userId": "u1", "event": "Viewed"}
    path = write_lines([line, "", line])

    ids = [m["messageId"] for m in read_segment_jsonl(path)]

    assert re.fullmatch(r"jsonl-1-[0-9a-f]{16}", ids[0])
    assert re.fullmatch(r"jsonl-3-[0-9a-f]{16}", ids[1])
    assert ids == [m["messageId"] for m in read_segment_jsonl(path)]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got '[1, 2]'"),
        (
            {"type": "purchase", "userId": "u1"},
            "type 'purchase' is not one of alias, group, identify, page, screen, track",
        ),
        ({"type": "track", "event": "Viewed"}, "a track needs userId or anonymousId"),
        ({"type": "track", "userId": ""}, "a track needs userId or anonymousId"),
        ({"type": "track", "userId": "u1"}, "a track needs a non-empty event name"),
        ({"type": "alias", "userId": "u1"}, "an alias needs userId and previousId"),
        ({"type": "group", "userId": "u1"}, "a group needs a groupId"),
        (
            {"type": "identify", "userId": "u1", "traits": [1]},
            "traits must be a JSON object, got [1]",
        ),
        (
            {"type": "track", "userId": "u1", "event": "E", "timestamp": "yesterday"},
            "timestamp 'yesterday' is not an ISO-8601 date-time",
        ),
    ],
)
def test_segment_invalid_line(write_lines, line, problem):
    valid = {"type": "track", "userId": "u1", "event": "Viewed"}
    path = write_lines([valid, line])

    with pytest.raises(ReplayFileError) as raised:
        read_segment_jsonl(path)

    assert str(raised.value).startswith(f"{path}, line 2: {problem}")


def test_segment_missing_file(tmp_path):
    path = tmp_path / "absent.jsonl"

    with pytest.raises(ReplayFileError) as raised:
        read_segment_jsonl(path)

    assert str(raised.value) == f"cannot open {path}: No such file or directory"


# ---------------------------------------------------------------------- clevertap-json


RECORDS = [
    {"identity": "u1", "ts": 1700000000, "type": "event", "evtName": "Charged", "evtData": {}},
    {"identity": "u2", "ts": 1700000001, "type": "profile", "profileData": {"Name": "Ada"}},
]


def test_clevertap_upload_body(tmp_path):
    path = tmp_path / "upload.json"
    path.write_text(json.dumps({"d": RECORDS}))

    assert list(read_clevertap_records(path)) == RECORDS


def test_clevertap_json_lines(write_lines):
    path = write_lines(RECORDS)

    records = read_clevertap_records(path)

    assert records.total == 2
    assert list(records) == RECORDS


def test_clevertap_sent_in_time_order(write_lines):
    records = [
        {"identity": "u1", "ts": 1700000005, "type": "event", "evtName": "B"},
        {"identity": "u1", "type": "profile", "profileData": {"Name": "Ada"}},
        {"identity": "u1", "ts": "1700000001", "type": "event", "evtName": "A"},
        {"identity": "u1", "ts": 1700000003000, "type": "event", "evtName": "Ms"},
    ]
    path = write_lines(records)

    names = [r.get("evtName", "profile") for r in read_clevertap_records(path)]

    assert names == ["A", "Ms", "B", "profile"]


def test_clevertap_single_record_line(write_lines):
    path = write_lines(RECORDS[:1])

    assert list(read_clevertap_records(path)) == RECORDS[:1]


def test_clevertap_top_level_list(tmp_path):
    path = tmp_path / "upload.json"
    path.write_text(json.dumps(RECORDS))

    with pytest.raises(ReplayFileError) as raised:
        read_clevertap_records(path)

    assert str(raised.value) == (
        f"{path} contains a JSON list; a clevertap-json file is an upload body "
        '{"d": [records]} or one record object per line'
    )


def test_clevertap_d_not_list(tmp_path):
    path = tmp_path / "upload.json"
    path.write_text(json.dumps({"d": {"identity": "u1"}}))

    with pytest.raises(ReplayFileError) as raised:
        read_clevertap_records(path)

    assert str(raised.value) == f"{path}: \"d\" must be a list of records, got {{'identity': 'u1'}}"


def test_clevertap_record_not_object(tmp_path):
    path = tmp_path / "upload.json"
    path.write_text(json.dumps({"d": [RECORDS[0], 7]}))

    with pytest.raises(ReplayFileError) as raised:
        read_clevertap_records(path)

    assert str(raised.value) == f'{path}: record 1 of "d" is not an object: 7'


def test_clevertap_invalid_line(write_lines):
    path = write_lines([RECORDS[0], "oops"])

    with pytest.raises(ReplayFileError, match=r", line 2: invalid JSON"):
        read_clevertap_records(path)


def test_read_events_dispatches(write_lines):
    path = write_lines(RECORDS)

    assert list(read_events(path, ReplayFormat.CLEVERTAP_JSON)) == RECORDS
