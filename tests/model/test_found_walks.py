"""Walks the model found, replayed step by step as regular tests (tests/model/test_interleavings.py's world).

Each names the promise it broke, and the fix it proves (a walk whose fix is not in yet is a strict xfail)."""

from __future__ import annotations

from typing import Any

import pytest
from docdrop.ledger import Status
from freezegun import freeze_time

from tests.model.test_interleavings import START, DocDropModel
from tests.model.world import Invocation
from tests.support.aws import create_ledger_table

pytestmark = pytest.mark.integration
IGNORE = ["botocore", "urllib3", "requests", "hypothesis", "_pytest", "pytest_timeout", "threading"]


def _run(invocation: Invocation, post: str, then: str = "go") -> None:
    """An invocation on to its end: its POST answered `post`, each write `then` (the first `then` ends a crash)."""
    while not invocation.done:
        invocation.advance(post if invocation.pending == "post" else then)


def test_a_resent_reviews_refused_document_is_never_taken_by_a_claim_that_never_posted(
    dynamodb_endpoint: str, ddb: Any
) -> None:
    """Found by make model: a person's resend of review A took A's first attempt out of the rivals (the resend's claim
    clears its window), so B, a claim of the same patient and folder that died before its POST, took the document
    A's first attempt sent, which the EMR refused, and B ended FAILED as A's document. Fixed: the approval keeps A's
    attempt as an item of its own, a rival as a dismissed review is (DocumentLedger._keep_attempt)."""
    DocDropModel.endpoint = dynamodb_endpoint
    DocDropModel.table = create_ledger_table(ddb)
    with freeze_time(START, auto_tick_seconds=0.0005, ignore=IGNORE) as clock:
        DocDropModel.clock = clock
        model = DocDropModel()
        model.start_the_clock()
        # A: Cobalt stores it and the answer is lost: a review. The EMR then refuses the document it sent.
        model.a_producer_puts_a_document(content=0, patient=0, tagged=True, same_key=False)
        first = model._start(model._visible()[0])
        _run(first, "stored_uploaded")
        model._after_step(first)
        [sent] = model.cobalt.documents.values()
        sent.uploaded = False
        model._report(sent.document_id)
        review = model.ledger.get_object(model.versions[0].ref) or {}
        assert review.get("status") == Status.NEEDS_REVIEW.value
        # B: another page of the same patient and folder; its invocation dies before it posts anything.
        model.a_producer_puts_a_document(content=1, patient=0, tagged=True, same_key=False)
        second = model._start(next(m for m in model._visible() if m.version is model.versions[1]))
        second.advance("go")
        second.advance("crash")
        model._after_step(second)
        # A person sees A's document refused, and sends A again; everything then settles.
        model._decide(review, "resend")
        model._settle()
        model.the_promises_hold()  # B must not hold A's refused document
