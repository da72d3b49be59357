"""Parsing S3 notifications out of SQS message bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from docdrop.s3_events import ObjectEvent, UnreadableMessage, parse_s3_notifications
from hypothesis import given, settings
from hypothesis import strategies as st


def record(name: str = "ObjectCreated:Put", key: str = "inbox/scan.pdf", **obj: Any) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": name,
        "s3": {"bucket": {"name": "inbox-bucket"}, "object": {"key": key, **obj}},
    }


def body(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def test_several_records_in_one_message_are_all_returned() -> None:
    events = parse_s3_notifications(
        body(record(key="inbox/a.pdf", versionId="v1", size=10), record(key="inbox/b.pdf", versionId="v2", size=20))
    )
    assert [(e.key, e.version_id, e.size) for e in events] == [("inbox/a.pdf", "v1", 10), ("inbox/b.pdf", "v2", 20)]


def test_the_test_event_is_skipped() -> None:
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "inbox-bucket", "RequestId": "x"}
    assert parse_s3_notifications(json.dumps(test_event)) == []


def test_keys_are_url_decoded_with_plus_as_space() -> None:
    events = parse_s3_notifications(body(record(key="inbox/a+scan%2B1/%C3%9Cn%C3%AF+c%C3%B8d%C3%A9.pdf")))
    assert events[0].key == "inbox/a scan+1/Ünï cødé.pdf"


@pytest.mark.parametrize("name", ["ObjectCreated:Put", "ObjectCreated:CompleteMultipartUpload", "ObjectTagging:Put"])
def test_creations_and_taggings_are_acted_on(name: str) -> None:
    assert [e.event_name for e in parse_s3_notifications(body(record(name)))] == [name]


@pytest.mark.parametrize(
    "name", ["ObjectRemoved:DeleteMarkerCreated", "ObjectRemoved:Delete", "ObjectTagging:Delete", "ObjectAcl:Put"]
)
def test_delete_markers_and_other_events_are_ignored(name: str) -> None:
    assert parse_s3_notifications(body(record(name))) == []


def test_the_version_is_the_version_id_and_never_the_sequencer() -> None:
    versioned, unversioned, suspended, neither = parse_s3_notifications(
        body(
            record(versionId="3HL4kqtJlcpXroDTDmJ", sequencer="0A1B"),
            record(sequencer="0A1B2C"),
            record(versionId="null", sequencer="0A1B2D"),
            record(),
        )
    )
    assert versioned.identity == "3HL4kqtJlcpXroDTDmJ"
    # A tagging event of the same write carries no sequencer: naming a version by it made two records, two uploads.
    assert unversioned.identity is None and suspended.identity is None and neither.identity is None


def test_a_zero_byte_key_ending_in_slash_is_a_folder_placeholder() -> None:
    (event,) = parse_s3_notifications(body(record(key="inbox/scans/", size=0)))
    assert event.is_folder_placeholder
    assert not ObjectEvent("ObjectCreated:Put", "b", "inbox/a.pdf", None, None, 0).is_folder_placeholder


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"Records": "x"}', '{"Records": [1]}', body({"eventName": "ObjectCreated:Put"}), "{}"],
)
def test_a_body_that_is_not_an_s3_notification_is_unreadable(text: str) -> None:
    with pytest.raises(UnreadableMessage):
        parse_s3_notifications(text)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _json,
        st.builds(
            lambda name, obj: {"Records": [{"eventName": name, "s3": {"bucket": {"name": "b"}, "object": obj}}]},
            st.sampled_from(["ObjectCreated:Put", "ObjectTagging:Put", "s3:ObjectCreated:Copy", "x"]),
            st.dictionaries(st.sampled_from(["key", "size", "versionId", "sequencer"]), _json, max_size=4),
        ),
    )
)
def test_any_json_body_is_parsed_or_declared_unreadable(document: Any) -> None:
    try:
        events = parse_s3_notifications(json.dumps(document))
    except UnreadableMessage:
        return
    for event in events:
        assert event.key and isinstance(event.bucket, str)
        assert event.size is None or isinstance(event.size, int)
