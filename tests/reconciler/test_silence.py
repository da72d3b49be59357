"""Reviews that resolve the other way (#28): "not filed, by silence" once Cobalt's whole event log over the attempt's
window and the horizon holds nothing of its patient and folder; and every condition of it that keeps a review open."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from docdrop.cobalt import EventLogUnavailable
from docdrop.cobalt_events import outcome_event_from
from docdrop.contract import UploadFields
from docdrop.evidence import patient_folder_fingerprint
from docdrop.ledger import SILENCE, OutcomeEvent, Status
from docdrop.reviews import LoggedDocument, silence_of
from docdrop.uploader import Deadline

from local.samples import pdf_bytes
from tests.reconciler.conftest import OpenLoops
from tests.reconciler.test_reviews import FOLDER, KEY, _review

HORIZON = timedelta(hours=72)
PAST_HORIZON = HORIZON + timedelta(hours=1)  # the attempt's window (40 s, +10 min) and the horizon have passed


@pytest.fixture
def silent_loops(loops: OpenLoops) -> OpenLoops:
    loops.fingerprint_key = KEY
    loops.page_size = 100
    return loops


def _mrn() -> str:
    """A patient of this test only: the sandbox's event log is shared by every test of the session."""
    return "8" + str(uuid.uuid4().int)[:7]


def _pass(loops: OpenLoops, after: timedelta, **deadlines: Any) -> Any:
    loops.clock.offset = after
    return loops.reconciler(**deadlines).run(Deadline(60))


def test_a_review_with_nothing_in_cobalts_whole_log_over_its_span_is_silent_and_keeps_what_was_checked(
    silent_loops: OpenLoops,
) -> None:
    loops = silent_loops
    ref = _review(loops, "never stored.pdf", pdf_bytes("never stored"), mrn=_mrn())

    assert _pass(loops, HORIZON - timedelta(hours=1)).reviews_found_silent == 0  # the horizon has not passed
    assert SILENCE not in loops.ledger.get_object(ref)
    report = _pass(loops, PAST_HORIZON)

    assert report.reviews_found_silent == 1 and report.reviews_resent_by_silence == 0
    item = loops.ledger.get_object(ref)
    assert item["status"] == Status.NEEDS_REVIEW.value  # silent: resent by a person's one command, not on its own
    check = item[SILENCE]
    assert check["verdict"] == "silent" and check["pages"] >= len(("document.uploaded", "document.upload_failed"))
    sent = datetime.fromisoformat(item["attempt_sent_at"])
    assert datetime.fromisoformat(check["span_start"]) <= sent
    assert datetime.fromisoformat(check["span_end"]) >= datetime.fromisoformat(item["attempt_ended_at"]) + HORIZON
    assert check["log_from"] <= (sent - timedelta(days=1)).date().isoformat() and check["checked_at"]
    assert loops.ledger.history(ref.object_id)[-1]["reason"].startswith("Not filed, by silence")
    assert loops.metrics.counts["ReviewsFoundSilent"] == 1
    assert _pass(loops, PAST_HORIZON).reviews_found_silent == 0  # checked once, kept


def test_an_event_log_that_could_not_be_read_to_its_end_decides_nothing(
    silent_loops: OpenLoops, monkeypatch: pytest.MonkeyPatch
) -> None:
    loops = silent_loops
    mrn = _mrn()
    ref = _review(loops, "unread.pdf", pdf_bytes("unread"), mrn=mrn)
    for name in ("first.pdf", "second.pdf"):  # two pages of this test's own at a page size of 1
        loops.cobalt.upload_document(UploadFields(_mrn(), FOLDER), name, "application/pdf", pdf_bytes(name))
    loops.wait_for_outcomes(2)
    loops.page_size = 1
    real = loops.cobalt.webhook_events

    def second_page_fails(**kwargs: Any) -> Any:
        if kwargs["page"] >= 2:
            raise EventLogUnavailable("Cobalt's event log answered HTTP 503")
        return real(**kwargs)

    monkeypatch.setattr(loops.cobalt, "webhook_events", second_page_fails)
    report = _pass(loops, PAST_HORIZON)

    assert report.reviews_found_silent == 0 and report.event_log_unavailable
    assert SILENCE not in loops.ledger.get_object(ref)  # not even "not silent": checked again by the next pass
    monkeypatch.setattr(loops.cobalt, "webhook_events", real)
    assert _pass(loops, PAST_HORIZON).reviews_found_silent == 1


def test_a_document_of_the_same_patient_and_folder_in_the_log_within_the_span_keeps_it_for_a_person(
    silent_loops: OpenLoops,
) -> None:
    """The EMR filed a document of this patient and folder two hours after the attempt (outside the window a match
    uses, inside the span): it may be the attempt's, filed late. Not silent; a person decides."""
    loops = silent_loops
    mrn = _mrn()
    ref = _review(
        loops, "filed late.pdf", pdf_bytes("filed late"), mrn=mrn, sent=datetime.now(UTC) - timedelta(hours=2)
    )
    answer = loops.cobalt.upload_document(UploadFields(mrn, FOLDER), "x.pdf", "application/pdf", pdf_bytes("late"))
    loops.wait_for_outcomes(1)

    report = _pass(loops, PAST_HORIZON)

    assert report.reviews_found_silent == 0
    item = loops.ledger.get_object(ref)
    assert item["status"] == Status.NEEDS_REVIEW.value
    assert item[SILENCE]["verdict"] == "not silent" and str(answer.document_id) in item[SILENCE]["why"]
    assert loops.ledger.get_document(str(answer.document_id))  # its lost webhook's outcome is in the ledger now


def test_an_unjoined_document_in_the_ledger_within_the_span_keeps_it_for_a_person(silent_loops: OpenLoops) -> None:
    """The ledger holds an outcome of this patient and folder no object claimed (its webhook came; Cobalt's log no
    longer shows it, say): not silent."""
    loops = silent_loops
    mrn = _mrn()
    sent = datetime.now(UTC) - timedelta(hours=2)
    ref = _review(loops, "unjoined.pdf", pdf_bytes("unjoined"), mrn=mrn, sent=sent)
    fingerprint = patient_folder_fingerprint(KEY, mrn, FOLDER)
    created = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    event = OutcomeEvent("evt-silence-unjoined", "document.uploaded", "7700000000000001", created)
    assert loops.ledger.record_outcome(dataclasses.replace(event, evidence_fingerprint=fingerprint))
    loops.stream("7700000000000001")

    report = _pass(loops, PAST_HORIZON)

    assert report.reviews_found_silent == 0
    check = loops.ledger.get_object(ref)[SILENCE]
    assert check["verdict"] == "not silent" and "7700000000000001" in check["why"]


def test_two_objects_with_the_same_evidence_are_both_left_for_a_person(silent_loops: OpenLoops) -> None:
    loops = silent_loops
    mrn = _mrn()
    first = _review(loops, "one of two.pdf", pdf_bytes("one"), mrn=mrn)
    second = _review(loops, "two of two.pdf", pdf_bytes("two"), mrn=mrn)

    assert _pass(loops, PAST_HORIZON).reviews_found_silent == 0

    for ref in (first, second):
        check = loops.ledger.get_object(ref)[SILENCE]
        assert check["verdict"] == "not silent" and "1 other object(s) claim" in check["why"]


def test_with_resend_silent_reviews_the_reconciler_sends_each_silent_review_once(silent_loops: OpenLoops) -> None:
    loops = silent_loops
    ref = _review(loops, "resent by silence.pdf", pdf_bytes("resent"), mrn=_mrn())

    report = _pass(loops, PAST_HORIZON, resend_silent=True)

    assert (report.reviews_found_silent, report.reviews_resent_by_silence) == (1, 1)
    assert loops.resent == [ref]
    item = loops.ledger.get_object(ref)
    assert item["resend_approved"] and item["decided_by"] == "reconciler (silence)" and item["resent_by_silence"]
    assert loops.metrics.counts["ReviewsResentBySilence"] == 1
    assert _pass(loops, PAST_HORIZON, resend_silent=True).reviews_resent_by_silence == 0  # approved once: not again
    # Its resend met an ambiguous answer again: a new review, found silent again, but never resent by the reconciler.
    claim = loops.ledger.claim(ref, lease_seconds=60)
    assert claim.won and loops.ledger.mark_post_started(ref, claim.token)
    sent = datetime.now(UTC) + PAST_HORIZON
    loops.ledger.record_claimed_state(
        ref,
        claim.token,
        Status.NEEDS_REVIEW,
        "Cobalt did not answer in time",
        attempt_sent_at=sent.isoformat(),
        attempt_ended_at=(sent + timedelta(seconds=30)).isoformat(),
    )
    report = _pass(loops, 2 * PAST_HORIZON + timedelta(hours=1), resend_silent=True)
    assert (report.reviews_found_silent, report.reviews_resent_by_silence) == (1, 0)
    assert loops.resent == [ref]


@pytest.mark.parametrize(
    ("offset", "fingerprint", "linked_to", "silent"),
    [
        (timedelta(0), "mine", None, False),  # at the window's first instant: inside
        (-timedelta(seconds=1), "mine", None, True),  # just before it: another attempt's
        (HORIZON, "mine", None, False),  # inside the horizon after the window
        (HORIZON + timedelta(days=1), "mine", None, False),  # after it: the EMR may have filed it late
        (timedelta(0), "mine", "another object", True),  # DocDrop's other upload's document
        (timedelta(0), None, None, False),  # an event with no patient and folder: could be anyone's
        (timedelta(0), "another patient", None, True),
    ],
)
def test_a_logged_document_keeps_a_review_open_from_its_window_on_and_only_if_it_could_be_its(
    offset: timedelta, fingerprint: str | None, linked_to: str | None, silent: bool
) -> None:
    sent = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    review = {
        "object_id": "mine-object",
        "evidence_fingerprint": "mine",
        "attempt_sent_at": sent.isoformat(),
        "attempt_ended_at": (sent + timedelta(seconds=30)).isoformat(),
    }
    window_start = sent - timedelta(minutes=1)  # docdrop.reviews.MARGIN_BEFORE
    logged = [LoggedDocument("5550000000000001", fingerprint, window_start + offset, linked_to)]
    assert (silence_of(review, HORIZON, logged, [], []) is None) is silent


def test_a_review_without_evidence_is_never_silent() -> None:
    assert silence_of({"object_id": "x"}, HORIZON, [], [], []) == "no evidence was kept for this attempt"


def test_a_lost_webhooks_document_in_the_log_is_matched_not_found_silent(silent_loops: OpenLoops) -> None:
    """The attempt was stored, and only its webhook was lost: the whole read records its outcome, and it is matched."""
    loops = silent_loops
    mrn = _mrn()
    content = pdf_bytes("stored, webhook lost")
    ref = _review(loops, "stored.pdf", content, mrn=mrn)
    answer = loops.cobalt.upload_document(UploadFields(mrn, FOLDER), "stored.pdf", "application/pdf", content)
    loops.wait_for_outcomes(1)
    record = next(r for r in loops.sandbox.events if r["event"]["data"]["document_id"] == answer.document_id)
    assert outcome_event_from(record["event"]) is not None

    report = _pass(loops, PAST_HORIZON)

    assert report.reviews_found_silent == 0 and report.reviews_resolved == 1
    assert loops.ledger.get_object(ref)["document_id"] == answer.document_id


def test_a_review_whose_version_cobalt_accepted_and_whose_record_is_pending_is_never_silent() -> None:
    """Found by the model (make model-reverts, on the fixed code): an upload's submission write failed, so its
    document id was kept for the reconciler (`remember_submission`), the version became a review, and the EMR had not
    yet reported the document. Nothing was in Cobalt's log, and the review was found silent: Cobalt holds it."""
    sent = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    review = {
        "object_id": "kept-object",
        "evidence_fingerprint": "mine",
        "attempt_sent_at": sent.isoformat(),
        "attempt_ended_at": (sent + timedelta(seconds=30)).isoformat(),
    }
    kept = [{"object_id": "kept-object", "document_id": "7000000000000001", "outcome_unjoined": "UNRECORDED"}]
    why = silence_of(review, HORIZON, [], [], [], kept)
    assert why is not None and "7000000000000001" in why
    assert silence_of(review, HORIZON, [], [], [], [{"object_id": "another", "document_id": "1"}]) is None
