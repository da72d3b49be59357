"""The upload path and the reconciler together: a version whose tags never came is REJECTED at its deadline, and
still goes out (once) when its tags finally arrive; its file never has to be uploaded to S3 again."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError
from docdrop.cobalt import CobaltClient
from docdrop.ledger import ObjectRef, OutcomeEvent
from docdrop.outcomes import OutcomeJoiner
from docdrop.reconciler import Reconciler
from docdrop.s3_events import s3_notification
from docdrop.uploader import Deadline

from local.samples import pdf_bytes
from tests.reconciler.conftest import DEADLINES, Clock, RecordedMetrics
from tests.support.stream import as_the_stream_does
from tests.uploader.conftest import AUTH, MRN, UploaderStack, tags


def _reconcile_after(stack: UploaderStack, after: timedelta) -> None:
    metrics = RecordedMetrics()
    Reconciler(
        stack.ledger,
        CobaltClient(stack.sandbox.base_url, lambda refresh: AUTH),
        OutcomeJoiner(stack.ledger, metrics, logging.getLogger("test")),
        DEADLINES,
        metrics=metrics,
        logger=logging.getLogger("test"),
        clock=Clock(after),
    ).run(Deadline(60))


def test_tags_that_arrive_after_the_deadline_still_send_the_version_once(uploader_stack: UploaderStack) -> None:
    stack = uploader_stack
    stack.put("late-tags.pdf", pdf_bytes("late"), tags={"patient_mrn": MRN})
    stack.drain()
    assert stack.view("late-tags.pdf").status == "WAITING_FOR_TAGS"

    _reconcile_after(stack, timedelta(hours=73))
    rejected = stack.view("late-tags.pdf")
    assert rejected.status == "REJECTED" and rejected.reason.startswith("Required tags never arrived: folder_name")
    assert stack.uploads() == []

    stack.tag("late-tags.pdf", tags())
    stack.drain()
    assert stack.view("late-tags.pdf").status == "SUBMITTED"
    stack.tag("late-tags.pdf", tags(is_reviewed="true"))  # a further tagging event: a duplicate, never a resend
    stack.drain()
    assert [d["filename"] for d in stack.uploads()] == ["late-tags.pdf"]


class _AwsWithoutListBucket:
    """S3 as AWS answers a role without s3:ListBucket: 403 AccessDenied where moto says 404 NoSuchKey/NoSuchVersion.

    `denied` makes every read of an object that does exist a 403 too (a key policy or a KMS grant gone wrong).
    """

    def __init__(self, s3: Any, denied: bool = False) -> None:
        self._s3 = s3
        self._denied = denied

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def _read(self, operation: str, **kwargs: Any) -> Any:
        if self._denied:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, operation)
        try:
            return getattr(self._s3, operation)(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "NoSuchVersion", "404"):
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, operation) from None
            raise

    def get_object(self, **kwargs: Any) -> Any:
        return self._read("get_object", **kwargs)

    def get_object_tagging(self, **kwargs: Any) -> Any:
        return self._read("get_object_tagging", **kwargs)


def test_a_version_deleted_before_it_was_read_is_rejected_even_when_s3_answers_403(
    uploader_stack: UploaderStack,
) -> None:
    stack = uploader_stack
    stack.module.uploader._s3 = _AwsWithoutListBucket(stack.s3)
    content = pdf_bytes("gone")
    version = stack.put("deleted.pdf", content, tags=tags())
    stack.s3.delete_object(Bucket=stack.bucket, Key="inbox/deleted.pdf", VersionId=version)
    stack.receive()  # moto's own event names no version; AWS's does: deliver that one instead
    body = s3_notification(stack.bucket, "inbox/deleted.pdf", version, len(content))
    stack.sqs.send_message(QueueUrl=stack.queues.queue_url, MessageBody=body)
    stack.drain()
    view = stack.view("deleted.pdf")
    assert view.status == "REJECTED" and view.reason == "The object version was deleted before DocDrop could read it"
    assert stack.uploads() == []


def test_a_version_that_exists_but_cannot_be_read_is_retried_not_rejected(uploader_stack: UploaderStack) -> None:
    stack = uploader_stack
    stack.module.uploader._s3 = _AwsWithoutListBucket(stack.s3, denied=True)
    stack.put("denied.pdf", pdf_bytes("denied"), tags=tags())
    reports = stack.drain()
    assert (
        reports and reports[0].failed_receipts
    )  # back to the queue, then the DLQ and its alarm: a person fixes access
    assert stack.ledger.lookup(stack.ref("denied.pdf")) is None


def _s3_event(bucket: str, key: str, name: str, **object_fields: Any) -> str:
    """An S3 notification for an unversioned bucket, as S3 sends it: a sequencer on creation, nothing on tagging."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, **object_fields}},
    }
    return json.dumps({"Records": [record]})


def test_an_unversioned_bucket_never_uploads_and_says_why_on_every_object(uploader_stack: UploaderStack) -> None:
    stack = uploader_stack
    bucket = f"{stack.bucket}-plain"
    stack.s3.create_bucket(Bucket=bucket)  # versioning never enabled, as an administrator may leave it (or suspend it)
    key = "inbox/scanner/tags-later.pdf"
    content = pdf_bytes("unversioned")
    put = stack.s3.put_object(Bucket=bucket, Key=key, Body=content, Tagging="patient_mrn=100001")
    send = stack.sqs.send_message
    send(
        QueueUrl=stack.queues.queue_url,
        MessageBody=_s3_event(
            bucket,
            key,
            "ObjectCreated:Put",
            size=len(content),
            eTag=put["ETag"].strip('"'),
            sequencer="0062E99A88DC407460",
        ),
    )
    stack.drain()
    stack.s3.put_object_tagging(
        Bucket=bucket,
        Key=key,
        Tagging={"TagSet": [{"Key": "patient_mrn", "Value": MRN}, {"Key": "folder_name", "Value": "MedicalRecords"}]},
    )
    send(QueueUrl=stack.queues.queue_url, MessageBody=_s3_event(bucket, key, "ObjectTagging:Put"))
    stack.drain()

    assert stack.uploads() == []  # never sent, so never sent twice
    view = stack.ledger.lookup(ObjectRef(bucket, key, "unversioned"))
    assert view is not None and view.status == "REJECTED" and "versioning is off or suspended" in (view.reason or "")


class _SubmissionsFail:
    """DynamoDB whose write of SUBMITTED on an object keeps failing (the submission's), everything else working."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **kwargs: Any) -> Any:
        submitting = {"S": "SUBMITTED"} in kwargs.get("ExpressionAttributeValues", {}).values()
        if kwargs["Key"]["pk"]["S"].startswith("OBJ#") and submitting:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, "UpdateItem")
        return self._client.update_item(**kwargs)


def test_a_submission_cobalt_accepted_but_docdrop_could_not_record_is_kept_and_closed_by_its_outcome(
    uploader_stack: UploaderStack,
) -> None:
    stack = uploader_stack
    ledger = stack.module.uploader._ledger
    ledger._client = _SubmissionsFail(ledger._client)
    stack.module.uploader._sleep = lambda seconds: None
    stack.put("unrecorded.pdf", pdf_bytes("unrecorded"), tags=tags())
    stack.drain()
    [sent] = stack.uploads()
    assert stack.ledger.get_object(stack.ref("unrecorded.pdf"))["status"] == "RECEIVED"
    kept = stack.ledger.get_document(sent["document_id"])
    assert kept["object_id"] == stack.ref("unrecorded.pdf").object_id  # the document id is not only in a log line
    stack.wait_for_outcome_event(sent["document_id"])

    _reconcile_after(stack, timedelta(minutes=16))  # records the submission, then finds the outcome in the log

    item = stack.ledger.get_object(stack.ref("unrecorded.pdf"))
    assert (item["status"], item["document_id"]) == ("UPLOADED", sent["document_id"])
    history = stack.ledger.history(stack.ref("unrecorded.pdf").object_id)
    assert [h["status"] for h in history] == ["RECEIVED", "SUBMITTED", "UPLOADED"]
    assert len(stack.uploads()) == 1


def test_an_unrecorded_submission_whose_outcome_came_first_is_joined_even_after_review(
    uploader_stack: UploaderStack,
) -> None:
    stack = uploader_stack
    ref = ObjectRef(stack.bucket, "inbox/review-then-outcome.pdf", "v1")
    claim = stack.ledger.claim(ref, lease_seconds=0.01)
    stack.ledger.remember_submission(ref, claim.token, "5550000000000001", None)
    time.sleep(0.05)
    assert stack.ledger.mark_interrupted(ref, "interrupted")  # the lease ran out: NEEDS_REVIEW, as it should
    stack.ledger.record_outcome(OutcomeEvent("evt-1", "document.uploaded", "5550000000000001", "2026-11-30T10:00:00Z"))
    _reconcile_after(stack, timedelta(minutes=1))
    item = stack.ledger.get_object(ref)
    assert (item["status"], item["document_id"]) == ("UPLOADED", "5550000000000001")  # definitive evidence: closed


def test_an_ambiguous_upload_that_cobalt_stored_and_reported_is_resolved_by_its_evidence(
    uploader_stack: UploaderStack,
) -> None:
    import dataclasses

    from docdrop.cobalt_events import outcome_event_from
    from docdrop.evidence import patient_folder_fingerprint

    stack = uploader_stack
    stack.script({"fault": "slow_after_accept"})  # stored, answered after the read timeout
    stack.put("slow.pdf", pdf_bytes("slow answer"), tags=tags())
    stack.drain()
    review = stack.ledger.get_object(stack.ref("slow.pdf"))
    assert review["status"] == "NEEDS_REVIEW" and review["attempt_sent_at"] <= review["attempt_ended_at"]
    assert review["sha256"] and review["evidence_fingerprint"] and MRN not in json.dumps(review, default=str)
    deadline = time.monotonic() + 10
    while not stack.sandbox.events and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = stack.sandbox.events
    key = str(stack.module.fingerprint_key.get()["key"]).encode()
    data = record["event"]["data"]
    event = outcome_event_from(record["event"])
    assert event is not None  # the webhook's own path, with the fingerprint the webhook computes
    stack.ledger.record_outcome(
        dataclasses.replace(
            event, evidence_fingerprint=patient_folder_fingerprint(key, data["patient_mrn"], data["folder_name"])
        )
    )
    as_the_stream_does(stack.ledger, data["document_id"])
    _reconcile_after(stack, timedelta(minutes=16))  # after the outcome grace: no upload of its own links it
    item = stack.ledger.get_object(stack.ref("slow.pdf"))
    assert (item["status"], item["document_id"]) == ("UPLOADED", data["document_id"])
    assert len(stack.uploads()) == 1  # matched, never sent again
