"""An object's status follows its Cobalt document's outcome within seconds: the ledger's stream, filtered as the
template filters it, drives the outcome joiner function, on the real DynamoDB Local engine (promises 2 and 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from docdrop.ledger import DocumentLedger, JoinResult, ObjectRef, OutcomeEvent, Status

from local.lambda_runtime import load_handler_module
from local.resources import outcome_joiner_stream_source
from local.stream_source import DynamoDBStreamSource, matches

REF = ObjectRef("inbox", "inbox/clinic/Jane Doe referral.pdf", "v1")
DOCUMENT = "4444333322221111"


def uploaded(event_id: str = "evt-1", document_id: str = DOCUMENT) -> OutcomeEvent:
    return OutcomeEvent(event_id, "document.uploaded", document_id, "2026-11-30T10:00:00Z")


@dataclass
class JoinerStack:
    ledger: DocumentLedger
    source: DynamoDBStreamSource
    module: ModuleType

    def submit(self, ref: ObjectRef = REF, document_id: str = DOCUMENT) -> None:
        claim = self.ledger.claim(ref, lease_seconds=60)
        self.ledger.record_submission(ref, claim.token, document_id)

    def drain(self) -> None:
        while self.source.poll_once():
            pass


@pytest.fixture
def joiner(
    monkeypatch: pytest.MonkeyPatch, ddb: Any, ledger_table: str, dynamodb_endpoint: str
) -> Iterator[JoinerStack]:
    monkeypatch.setenv("LEDGER_TABLE", ledger_table)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "DocDrop")
    module = load_handler_module("outcome_joiner")
    module.metrics.clear_metrics()  # Powertools keeps metrics per process; Lambda gives each function its own process
    streams = boto3.client("dynamodbstreams", endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    arn = ddb.describe_table(TableName=ledger_table)["Table"]["LatestStreamArn"]
    source = DynamoDBStreamSource(streams, arn, module.handler, outcome_joiner_stream_source())
    yield JoinerStack(DocumentLedger(ddb, ledger_table), source, module)


def _emitted(capsys: pytest.CaptureFixture[str], name: str) -> float:
    """The sum of one metric over the EMF blobs the function printed (as CloudWatch would add them up)."""
    total = 0.0
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            value = json.loads(line).get(name)
            total += sum(value) if isinstance(value, list) else (value or 0)
    return total


def test_an_outcome_after_its_submission_moves_the_object_at_the_next_stream_poll(
    joiner: JoinerStack, capsys: pytest.CaptureFixture[str]
) -> None:
    joiner.submit()
    joiner.ledger.record_outcome(uploaded())
    joiner.drain()
    item = joiner.ledger.get_object(REF)
    assert (item["status"], item["reason"]) == ("UPLOADED", "Filed in the EMR")
    assert [h["status"] for h in joiner.ledger.history(REF.object_id)] == ["RECEIVED", "SUBMITTED", "UPLOADED"]
    assert "outcome_unjoined" not in joiner.ledger.get_document(DOCUMENT)  # out of the unjoined index
    assert _emitted(capsys, "DocumentsUploaded") == 1


def test_an_outcome_before_its_submission_is_joined_when_the_submission_lands(
    joiner: JoinerStack, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = OutcomeEvent("evt-f", "document.upload_failed", DOCUMENT, "2026-11-30T10:00:00Z", "Patient not found.")
    joiner.ledger.record_outcome(failed)
    joiner.drain()
    # No object yet: the joiner only lists it as unjoined (for the reviews and the foreign sweep), and counts nothing.
    assert joiner.ledger.get_document(DOCUMENT)["outcome_unjoined"] == "FAILED"
    assert _emitted(capsys, "DocumentsFailed") == 0
    joiner.submit()
    joiner.drain()
    item = joiner.ledger.get_object(REF)
    assert (item["status"], item["reason"]) == ("FAILED", "Patient not found.")
    assert "outcome_unjoined" not in joiner.ledger.get_document(DOCUMENT)  # the link took it out of the index
    assert _emitted(capsys, "DocumentsFailed") == 1


def test_an_outcome_for_a_document_docdrop_never_sent_is_listed_once_as_unjoined_and_never_counted(
    joiner: JoinerStack, capsys: pytest.CaptureFixture[str]
) -> None:
    joiner.ledger.record_outcome(uploaded("evt-x", "9999000099990000"))
    joiner.drain()
    assert joiner.source.delivered == 1  # its listing as unjoined is a new image the filter lets through no more
    assert joiner.ledger.get_document("9999000099990000")["outcome_unjoined"] == "UPLOADED"
    joiner.ledger.record_outcome(uploaded("evt-y", "9999000099990000"))  # a second event: already listed
    joiner.drain()
    assert joiner.source.delivered == 1
    assert _emitted(capsys, "DocumentsUploaded") == 0


def test_a_later_event_on_a_joined_document_changes_nothing_and_is_not_counted(
    joiner: JoinerStack, capsys: pytest.CaptureFixture[str]
) -> None:
    joiner.submit()
    joiner.ledger.record_outcome(uploaded("evt-1"))
    joiner.drain()
    late = OutcomeEvent("evt-2", "document.upload_failed", DOCUMENT, "2026-11-30T10:05:00Z", "Too late.")
    joiner.ledger.record_outcome(late)
    joiner.drain()
    assert joiner.ledger.get_object(REF)["status"] == "UPLOADED"  # a terminal outcome is never overwritten
    assert _emitted(capsys, "DocumentsUploaded") == 1 and _emitted(capsys, "DocumentsFailed") == 0
    assert "outcome_unjoined" not in joiner.ledger.get_document(DOCUMENT)


def test_a_join_retried_after_its_answer_was_lost_is_its_own_success_not_someone_elses(joiner: JoinerStack) -> None:
    joiner.submit()
    joiner.ledger.record_outcome(uploaded())
    document = joiner.ledger.get_document(DOCUMENT) or {}
    assert joiner.ledger.join_outcome(document, mark="seq-1") is JoinResult.JOINED
    # botocore re-sends the same write when DynamoDB applied it but the answer was lost: the mark says it was ours.
    assert joiner.ledger.join_outcome(document, mark="seq-1") is JoinResult.JOINED
    assert joiner.ledger.join_outcome(document, mark="seq-2") is JoinResult.ALREADY


def test_an_object_in_review_is_not_moved_by_an_outcome(joiner: JoinerStack) -> None:
    ref = ObjectRef("inbox", "inbox/review.pdf", "v1")
    claim = joiner.ledger.claim(ref, lease_seconds=60)
    joiner.ledger.record_claimed_state(ref, claim.token, Status.NEEDS_REVIEW, "ambiguous")
    document = {"document_id": "1", "object_id": ref.object_id, "outcome": "UPLOADED", "outcome_reason": "Filed"}
    assert joiner.ledger.join_outcome(document, mark="m") is JoinResult.NOT_OPEN
    assert joiner.ledger.get_object(ref)["status"] == "NEEDS_REVIEW"


def _record(new_image: dict[str, Any]) -> dict[str, Any]:
    return {"eventName": "MODIFY", "dynamodb": {"NewImage": new_image, "SequenceNumber": "1"}}


def test_the_local_event_filter_selects_what_the_templates_filter_selects() -> None:
    patterns = outcome_joiner_stream_source().filter_patterns

    def selected(image: dict[str, Any]) -> bool:
        return any(matches(p, _record({"sk": {"S": "CDOC"}, **image})) for p in patterns)

    both = {"pk": {"S": "CDOC#1"}, "object_id": {"S": "abc"}, "outcome": {"S": "UPLOADED"}}
    assert selected(both)
    assert selected({"pk": {"S": "CDOC#1"}, "outcome": {"S": "UPLOADED"}})  # to be listed as unjoined
    assert not selected({"pk": {"S": "CDOC#1"}, "outcome": {"S": "UPLOADED"}, "outcome_unjoined": {"S": "UPLOADED"}})
    assert not selected({"pk": {"S": "CDOC#1"}, "outcome": {"S": "UPLOADED"}, "foreign_at": {"S": "2026"}})
    assert not selected({"pk": {"S": "CDOC#1"}, "object_id": {"S": "abc"}})  # a link without an outcome yet
    assert not any(matches(p, _record({"sk": {"S": "OBJ"}, **both})) for p in patterns)
    assert not any(matches(p, {"eventName": "REMOVE", "dynamodb": {"Keys": {}}}) for p in patterns)
    assert matches({"eventName": ["INSERT", "MODIFY"]}, _record(both))
    assert matches({"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "CDOC#"}]}}}}, _record(both))
    assert not matches({"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "OBJ#"}]}}}}, _record(both))
    assert matches({"dynamodb": {"NewImage": {"gone": {"S": [{"exists": False}]}}}}, _record(both))


def test_an_event_filter_operator_the_local_stack_cannot_emulate_fails_loudly() -> None:
    with pytest.raises(NotImplementedError):
        matches({"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 0]}]}}}}, _record({"n": {"N": "1"}}))
