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


def _upload_next(model: DocDropModel) -> None:
    """The first visible message taken, and its invocation run to its end with Cobalt accepting its POST."""
    invocation = model._start(model._visible()[0])
    _run(invocation, "accept_uploaded")
    model._after_step(invocation)


class Drawn:
    """What a rule's `data.draw` returns, in order: a walk's choices, written down."""

    def __init__(self, *values: Any) -> None:
        self.values = list(values)

    def draw(self, strategy: Any, label: Any = None) -> Any:
        return self.values.pop(0)


def _model(dynamodb_endpoint: str, ddb: Any, clock: Any) -> DocDropModel:
    DocDropModel.endpoint = dynamodb_endpoint
    DocDropModel.table = create_ledger_table(ddb)
    DocDropModel.clock = clock
    model = DocDropModel()
    model.start_the_clock()
    return model


def test_two_identical_versions_in_turns_past_a_refused_one_are_sent_once(dynamodb_endpoint: str, ddb: Any) -> None:
    """Defect 2 of #25, reached by the rules as a random walk would: the EMR refuses a document, its file is put twice
    in one batch, both invocations go on in turns (both past their reads before either re-holds the fingerprint), and
    Cobalt accepts each POST. With the forced hold unconditional again, both are filed (make model-reverts)."""
    with freeze_time(START, auto_tick_seconds=0.0005, ignore=IGNORE) as clock:
        model = _model(dynamodb_endpoint, ddb, clock)
        model.a_producer_puts_a_document(content=0, patient=0, tagged=True, same_key=False)
        _upload_next(model)
        [document] = model.cobalt.documents.values()
        racing = Drawn(document, "accept_uploaded", "accept_uploaded")
        model.the_emr_refuses_a_document_and_its_file_is_put_again_twice(racing, "in turns")
        model.the_promises_hold()
        statuses = sorted(str((model.ledger.get_object(v.ref) or {}).get("status")) for v in model.versions[1:])
        assert statuses == [Status.DUPLICATE.value, Status.RECEIVED.value]  # the second at its submission write
        assert len(model.cobalt.documents) == 2  # the refused one, and one of the two


def test_a_resend_of_a_kept_submission_the_emr_refused_carries_no_approval_into_submitted(
    dynamodb_endpoint: str, ddb: Any
) -> None:
    """Defect 6 of #25, reached by the rules: Cobalt accepts an upload whose submission write fails (its id is kept),
    the lapsed claim becomes a review, the EMR refuses the document with its webhook late, a person approves a resend,
    and the resend finds the kept submission and records it. With the approval kept past NEEDS_REVIEW again, the
    object is SUBMITTED and still carries it, so every later event of it would loop to the DLQ (make model-reverts)."""
    with freeze_time(START, auto_tick_seconds=0.0005, ignore=IGNORE) as clock:
        model = _model(dynamodb_endpoint, ddb, clock)
        model.a_producer_puts_a_document(content=0, patient=0, tagged=True, same_key=False)
        upload = Drawn(model._visible()[0])
        model.an_upload_runs_to_its_post_and_cobalt_answers(upload, "accept_uploaded", "not recorded")
        model.the_promises_hold()
        [claimed] = model._in_status(Status.RECEIVED)
        decided = Drawn(claimed)
        model.a_kept_submission_becomes_a_review_and_a_person_decides(decided, "refuses it, its webhook late", "resend")
        model.the_promises_hold()
        review = model.ledger.get_object(model.versions[0].ref) or {}
        assert review.get("status") == Status.NEEDS_REVIEW.value and review.get("resend_approved")
        resend = model._start(model._visible()[0])
        while not resend.done:
            resend.advance("go")
            model.the_promises_hold()
        model._after_step(resend)
        assert (model.ledger.get_object(model.versions[0].ref) or {}).get("status") == Status.SUBMITTED.value
        assert len(model.cobalt.documents) == 1  # recorded, never sent a second time


@pytest.mark.parametrize("first_try", ["accepted", "login_required, then retried"])
def test_a_copy_sent_anyway_and_refused_leaves_the_first_copy_guarding_its_file(
    dynamodb_endpoint: str, ddb: Any, first_try: str
) -> None:
    """Found by make model: a person sent a DUPLICATE anyway, which took the file's fingerprint over from the version
    in the chart; the EMR refused that copy, so the next identical version found only a refused holder, took it over,
    and was sent: the file was in the chart twice, and nobody had asked for it. Fixed: a take-over sent anyway keeps
    the version that may be in the chart on the fingerprint (`in_chart`), and the next version is its DUPLICATE. Found
    again: the copy's POST met login_required (BLOCKED), and its retry's own hold of the fingerprint removed `in_chart`;
    it is never removed now."""
    with freeze_time(START, auto_tick_seconds=0.0005, ignore=IGNORE) as clock:
        model = _model(dynamodb_endpoint, ddb, clock)
        model.a_producer_puts_a_document(content=0, patient=0, tagged=True, same_key=False)
        _upload_next(model)
        [filed] = model.cobalt.documents.values()
        model._report(filed.document_id)
        model._put_again(model.versions[0], 1, one_batch=False)
        _upload_next(model)
        model.the_promises_hold()
        [duplicate] = model._in_status(Status.DUPLICATE)
        model.a_person_sends_a_duplicate_anyway(Drawn(duplicate))
        anyway = model._start(model._visible()[0])
        if first_try != "accepted":
            _run(anyway, "login_required")
            model._after_step(anyway)
            model.an_operator_relinks_the_account()
            model.the_promises_hold()
            [blocked] = model._in_status(Status.BLOCKED)
            model.an_operator_runs_docdrop_retry(Drawn(blocked))
            anyway = model._start(model._visible()[0])
        _run(anyway, "accept_uploaded")
        model._after_step(anyway)
        [copy] = [d for d in model.cobalt.documents.values() if d.document_id != filed.document_id]
        copy.uploaded = False  # the EMR refuses the copy a person sent anyway
        model._report(copy.document_id)
        model.the_promises_hold()
        model._put_again(model.versions[0], 1, one_batch=False)
        _upload_next(model)
        model.the_promises_hold()
        item = model.ledger.get_object(model.versions[-1].ref) or {}
        assert item.get("status") == Status.DUPLICATE.value
        assert item.get("duplicate_of") == model.versions[0].object_id  # the copy in the chart, named
        assert len(model.cobalt.documents) == 2


def test_a_review_is_never_resolved_as_the_document_of_an_upload_still_in_flight(
    dynamodb_endpoint: str, ddb: Any
) -> None:
    """Defect 1 of #25, reached by the rules: B's POST is answered 500 (nothing stored: a review) while A's, same
    patient and folder, is accepted as D; D's webhook arrives before A's submission is recorded, a reconciler pass
    runs, then A records its submission. With the fix reverted, the pass links B to D and A's link overwrites it, so
    both are UPLOADED as D (make model-reverts)."""
    with freeze_time(START, auto_tick_seconds=0.0005, ignore=IGNORE) as clock:
        model = _model(dynamodb_endpoint, ddb, clock)
        model.a_producer_puts_a_document(content=1, patient=1, tagged=True, same_key=False)  # Cobalt answers: warm
        _upload_next(model)
        model.a_producer_puts_a_document(content=0, patient=0, tagged=True, same_key=False)
        model.a_producer_puts_a_document(content=1, patient=0, tagged=True, same_key=False)
        [version_a, version_b] = model.versions[1:]
        second = model._start(next(m for m in model._visible() if m.version is version_b))
        while second.pending != "post":
            second.advance("go")
        first = model._start(next(m for m in model._visible() if m.version is version_a))
        while first.pending != "post":
            first.advance("go")
        first.advance("accept_uploaded")  # D, created while B's POST is on its way
        while not first.pending.startswith("update_item OBJ"):  # A's submission write, not made yet
            first.advance("go")
        _run(second, "server_error")
        model._after_step(second)
        model._after_step(first)
        assert (model.ledger.get_object(version_b.ref) or {}).get("status") == Status.NEEDS_REVIEW.value
        [document] = [d for d in model.cobalt.documents.values() if d.object_id == version_a.object_id]
        model._report(document.document_id)  # D's webhook, before A's submission is recorded
        model.a_reconciler_pass()
        model.the_promises_hold()
        _run(first, "accept_uploaded")
        model._after_step(first)
        model.the_promises_hold()
        assert (model.ledger.get_object(version_b.ref) or {}).get("status") == Status.NEEDS_REVIEW.value
        assert (model.ledger.get_object(version_a.ref) or {}).get("document_id") == document.document_id
