"""The sample events in events/ stay what the functions actually receive."""

from __future__ import annotations

import json
from pathlib import Path

from docdrop.s3_events import parse_s3_notifications

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_the_sample_uploader_batch_parses_into_its_object_events() -> None:
    batch = json.loads((EVENTS / "uploader-sqs-batch.json").read_text())
    parsed = [parse_s3_notifications(record["body"]) for record in batch["Records"]]

    created, tagged, test_event = parsed
    assert [(e.event_name, e.key, e.size) for e in created] == [
        ("ObjectCreated:Put", "inbox/fax/2025-11-23/referral letter.pdf", 48213)
    ]
    assert [(e.event_name, e.size, e.identity) for e in tagged] == [
        ("ObjectTagging:Put", None, "Ftd5lBH9wJ0mtoFkOEy9VtWNf3qkXm2s")
    ]
    assert test_event == []
