"""S3 event notifications, as they arrive in the bodies of SQS messages: which object versions to look at.

One message may hold several records. `s3:TestEvent` (sent when a notification is configured) and anything that is not
a creation or a tagging of an object are skipped. Keys arrive URL-encoded (`+` for a space), so they are decoded with
`unquote_plus`. The object version is the event's `versionId`. Events without one (an unversioned or suspended bucket,
whose creation events carry a `sequencer` and tagging events nothing; or an emulator) are resolved when the object is
read; the sequencer never names a document, since a tagging event of the same write would not carry it.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

RESUMING_EVENTS = ("ObjectCreated:", "ObjectTagging:Put")


class UnreadableMessage(ValueError):
    """The message is not an S3 notification this function can act on (it goes back to the queue, then its DLQ)."""


@dataclasses.dataclass(frozen=True)
class ObjectEvent:
    """One S3 record: an object version was created, or its tags were set."""

    event_name: str
    bucket: str
    key: str
    version_id: str | None  # S3's own version id, when the bucket is versioned
    sequencer: str | None
    size: int | None  # absent from tagging events
    event_time: str | None = None

    @property
    def identity(self) -> str | None:
        """The version as the ledger names it, when the event says which: S3's version id ("null" is no version)."""
        if self.version_id and self.version_id != "null":
            return self.version_id
        return None

    @property
    def is_folder_placeholder(self) -> bool:
        """A zero-byte key ending in `/`: what consoles create for a folder, not a document."""
        return self.key.endswith("/") and not self.size


def parse_s3_notifications(body: str) -> list[ObjectEvent]:
    """The object events in one SQS message body; [] for test events and events DocDrop does not act on."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise UnreadableMessage("message body is not JSON") from exc
    if not isinstance(document, dict):
        raise UnreadableMessage("message body is not a JSON object")
    if document.get("Event") == "s3:TestEvent":
        return []
    records = document.get("Records")
    if not isinstance(records, list):
        raise UnreadableMessage("message body has no Records list")
    return [event for event in (_object_event(r) for r in records) if event is not None]


def _object_event(record: Any) -> ObjectEvent | None:
    if not isinstance(record, dict):
        raise UnreadableMessage("a record is not a JSON object")
    name = str(record.get("eventName") or "")
    name = name.removeprefix("s3:")
    if record.get("eventSource") not in (None, "aws:s3") or not name.startswith(RESUMING_EVENTS):
        return None  # deletions, delete markers, ACLs, restores...: nothing to send
    s3 = record.get("s3")
    if not isinstance(s3, dict) or not isinstance(s3.get("bucket"), dict) or not isinstance(s3.get("object"), dict):
        raise UnreadableMessage("an S3 record has no bucket or object")
    bucket, obj = s3["bucket"], s3["object"]
    if not isinstance(bucket.get("name"), str) or not isinstance(obj.get("key"), str) or not obj["key"]:
        raise UnreadableMessage("an S3 record has no bucket name or object key")
    size = obj.get("size")
    return ObjectEvent(
        event_name=name,
        bucket=bucket["name"],
        key=unquote_plus(obj["key"]),
        version_id=str(obj["versionId"]) if obj.get("versionId") else None,
        sequencer=str(obj["sequencer"]) if obj.get("sequencer") else None,
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        event_time=record.get("eventTime") if isinstance(record.get("eventTime"), str) else None,
    )


def s3_notification(
    bucket: str, key: str, version_id: str, size: int, event: str = "ObjectCreated:Put", region: str = "us-east-1"
) -> str:
    """An S3 event notification body for one object version, as S3 sends it (URL-encoded key, version id, size).

    What `docdrop retry`, `backfill` and a review's resend put on the ingest queue: the uploader cannot tell it from
    S3's own, and its claim on the version makes a repeat harmless.
    """
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": event,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/"), "size": size, "versionId": version_id},
        },
    }
    return json.dumps({"Records": [record]})
