"""The upload path and the reconciler together: a version whose tags never came is REJECTED at its deadline, and
still goes out (once) when its tags finally arrive; its file never has to be uploaded to S3 again."""

from __future__ import annotations

import logging
from datetime import timedelta

from docdrop.cobalt import CobaltClient
from docdrop.outcomes import OutcomeJoiner
from docdrop.reconciler import Reconciler
from docdrop.uploader import Deadline

from local.samples import pdf_bytes
from tests.reconciler.conftest import DEADLINES, Clock, RecordedMetrics
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
