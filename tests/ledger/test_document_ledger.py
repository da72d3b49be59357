"""The document ledger against the real DynamoDB Local engine, on a table made from template.yaml's definition."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any, cast

import pytest
from docdrop.ledger import DocumentLedger, JoinResult, LedgerError, ObjectRef, OutcomeEvent, Status

from tests.support.aws import dynamodb_client

REF = ObjectRef("inbox-bucket", "inbox/clinic a/Jane Doe scan.pdf", "v-1")


def outcome(
    event_id: str, event_type: str = "document.uploaded", document_id: str = "1111222233334444", **kw
) -> OutcomeEvent:
    return OutcomeEvent(
        event_id=event_id, event_type=event_type, document_id=document_id, created="2026-11-23T10:00:00Z", **kw
    )


@pytest.fixture
def ledger(ddb, ledger_table) -> DocumentLedger:
    return DocumentLedger(ddb, ledger_table)


def test_object_id_is_stable_and_does_not_contain_the_key() -> None:
    assert REF.object_id == ObjectRef(REF.bucket, REF.key, REF.version_id).object_id
    assert REF.object_id != ObjectRef(REF.bucket, REF.key, "v-2").object_id
    assert "Jane" not in REF.object_id and len(REF.object_id) == 32


def test_two_concurrent_claims_have_exactly_one_winner(ledger: DocumentLedger) -> None:
    barrier = threading.Barrier(8)
    results = []

    def contend() -> None:
        barrier.wait()
        results.append(ledger.claim(REF, lease_seconds=60))

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if r.won]
    assert len(winners) == 1
    for loser in (r for r in results if not r.won):
        assert loser.current is not None and loser.current["status"] == "RECEIVED"
        assert loser.current["claim_token"] == winners[0].token
    assert ledger.get_object(REF)["attempts"] == 1


def test_a_submitted_object_cannot_be_claimed_again(ledger: DocumentLedger) -> None:
    claim = ledger.claim(REF, lease_seconds=60)
    ledger.record_submission(REF, claim.token, "1111222233334444", job_id="77")
    again = ledger.claim(REF, lease_seconds=60)
    assert not again.won and again.current["status"] == "SUBMITTED"
    view = ledger.lookup(REF)
    assert (view.status, view.document_id, view.job_id) == ("SUBMITTED", "1111222233334444", "77")


def test_waiting_for_tags_then_claimed_when_the_tags_arrive(ledger: DocumentLedger) -> None:
    assert ledger.record_unclaimed_state(REF, Status.WAITING_FOR_TAGS, "Missing tag: patient_mrn")
    assert ledger.claim(REF, lease_seconds=60).won
    # A late duplicate of the first event cannot move a claimed object back to waiting or rejected.
    assert not ledger.record_unclaimed_state(REF, Status.WAITING_FOR_TAGS, "Missing tag: patient_mrn")
    assert not ledger.record_unclaimed_state(REF, Status.REJECTED, "x")
    history = [h["status"] for h in ledger.history(REF.object_id)]
    assert history == ["WAITING_FOR_TAGS", "RECEIVED"]


def test_rejected_is_final_for_unclaimed_writers_and_claims(ledger: DocumentLedger) -> None:
    assert ledger.record_unclaimed_state(REF, Status.REJECTED, "Not a PDF, JPEG or PNG")
    assert not ledger.claim(REF, lease_seconds=60).won
    assert ledger.lookup(REF).reason == "Not a PDF, JPEG or PNG"
    with pytest.raises(ValueError, match="not decided before a claim"):
        ledger.record_unclaimed_state(REF, Status.UPLOADED, "no")


def test_only_the_claim_holder_records_claimed_states(ledger: DocumentLedger) -> None:
    claim = ledger.claim(REF, lease_seconds=60)
    assert not ledger.record_claimed_state(REF, "someone-else", Status.FAILED, "x")
    assert ledger.record_claimed_state(REF, claim.token, Status.PENDING_RETRY, "Cobalt answered 503")
    retry = ledger.claim(REF, lease_seconds=60)
    assert retry.won and ledger.get_object(REF)["attempts"] == 2


def test_an_expired_claim_is_marked_needs_review_and_a_live_one_is_not(ledger: DocumentLedger) -> None:
    ledger.claim(REF, lease_seconds=60)
    assert not ledger.mark_interrupted(REF, "interrupted")
    other = ObjectRef("b", "k", "v")
    claim = ledger.claim(other, lease_seconds=0.01)
    time.sleep(0.05)
    assert ledger.mark_interrupted(other, "An earlier attempt stopped mid-upload; it may be in the EMR")
    assert ledger.lookup(other).status == "NEEDS_REVIEW"
    # If the slow invocation did get Cobalt's answer, the document id is kept and wins over the guess.
    ledger.record_submission(other, claim.token, "5555666677778888")
    assert ledger.lookup(other).status == "SUBMITTED"


def test_a_submission_after_a_person_dismissed_the_lapsed_claims_review_is_still_recorded(
    ledger: DocumentLedger,
) -> None:
    claim = ledger.claim(REF, lease_seconds=0.01)
    time.sleep(0.05)
    assert ledger.mark_interrupted(REF, "interrupted")
    assert ledger.dismiss_review(ledger.get_object(REF) or {}, "not in the chart", decided_by="nurse")
    ledger.record_submission(REF, claim.token, "5555666677778888")  # the slow POST's answer came after all
    item = ledger.get_object(REF)
    assert (item["status"], item["document_id"], item["open_state"]) == ("SUBMITTED", "5555666677778888", "IN_FLIGHT")


def test_a_submission_retried_after_its_answer_was_lost_is_its_own_success_and_another_claims_is_refused(
    ddb, ledger_table
) -> None:
    retried = DocumentLedger(cast(Any, _AnswerLost(ddb)), ledger_table)
    claim = retried.claim(REF, lease_seconds=60)
    retried.record_submission(REF, claim.token, "5555666677778888")  # applied, answer lost, re-sent: no error
    ledger = DocumentLedger(ddb, ledger_table)
    assert ledger.get_object(REF)["status"] == "SUBMITTED"
    assert ledger.get_document("5555666677778888")["object_id"] == REF.object_id
    with pytest.raises(LedgerError):
        ledger.record_submission(REF, "not-the-claim", "9999888877776666")
    assert ledger.get_object(REF)["document_id"] == "5555666677778888"


def test_outcome_before_submission_is_kept_and_joined(ledger: DocumentLedger) -> None:
    assert ledger.record_outcome(outcome("evt-1"))
    early = ledger.lookup_document("1111222233334444")
    assert early.status == "UPLOADED" and early.object_id is None
    claim = ledger.claim(REF, lease_seconds=60)
    ledger.record_submission(REF, claim.token, "1111222233334444")
    joined = ledger.lookup(REF)
    assert (joined.status, joined.reason) == ("UPLOADED", "Filed in the EMR")
    assert ledger.lookup_document("1111222233334444").key == REF.key


def test_a_duplicate_outcome_is_a_no_op(ledger: DocumentLedger) -> None:
    assert ledger.record_outcome(outcome("evt-1"))
    before = ledger.get_document("1111222233334444")
    assert not ledger.record_outcome(outcome("evt-1"))
    after = ledger.get_document("1111222233334444")
    assert before == after and len(after["events"]) == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [("document.uploaded", "document.upload_failed"), ("document.upload_failed", "document.uploaded")],
)
def test_conflicting_outcomes_keep_the_first_terminal_and_both_in_history(
    ledger: DocumentLedger, first, second
) -> None:
    claim = ledger.claim(REF, lease_seconds=60)
    ledger.record_submission(REF, claim.token, "1111222233334444")
    assert ledger.record_outcome(outcome("evt-1", first, failure_reason="Patient not found."))
    assert ledger.record_outcome(outcome("evt-2", second, failure_reason="Patient not found."))
    view = ledger.lookup(REF)
    expected = "UPLOADED" if first == "document.uploaded" else "FAILED"
    assert view.status == expected
    assert [e["event_id"] for e in view.events] == ["evt-1", "evt-2"]
    assert [e["type"] for e in view.events] == [first, second]


def test_failed_outcome_keeps_cobalts_reason_once_and_the_codes_on_its_event(ledger: DocumentLedger) -> None:
    reasons = ({"code": "PATIENT_NOT_FOUND", "description": "Patient not found."},)
    ledger.record_outcome(
        outcome("e", "document.upload_failed", failure_reason="Patient not found.", reasons=reasons, attempt=2)
    )
    document = ledger.get_document("1111222233334444")
    assert document["outcome_reason"] == "Patient not found."
    event = document["events"][0]
    assert event["reason_codes"] == ["PATIENT_NOT_FOUND"] and event["attempt"] == 2
    assert "Patient not found." not in str(event)  # the text is stored once, as the outcome's reason


def test_list_by_status_follows_the_objects_own_status_once_its_outcome_is_joined(ledger: DocumentLedger) -> None:
    ledger.record_unclaimed_state(ObjectRef("b", "k1", "v"), Status.REJECTED, "too big")
    claim = ledger.claim(REF, lease_seconds=60)
    ledger.record_submission(REF, claim.token, "1111222233334444")
    assert [v.key for v in ledger.list_by_status(Status.SUBMITTED)] == [REF.key]
    ledger.record_outcome(outcome("evt-1"))
    assert ledger.join_outcome(ledger.get_document("1111222233334444") or {}, mark="m1") is JoinResult.JOINED
    assert ledger.list_by_status(Status.SUBMITTED) == []  # joined: it is UPLOADED now
    uploaded = ledger.list_by_status(Status.UPLOADED)
    assert [(v.key, v.reason) for v in uploaded] == [(REF.key, "Filed in the EMR")]
    assert [v.reason for v in ledger.list_by_status(Status.REJECTED)] == ["too big"]
    assert ledger.list_by_status(Status.REJECTED, older_than=timedelta(hours=1)) == []


def test_login_required_is_recorded_once_per_event(ledger: DocumentLedger) -> None:
    assert ledger.record_login_required("clinic-main", "evt-9", "2026-11-23T10:00:00Z", "re-link")
    assert not ledger.record_login_required("clinic-main", "evt-9", "2026-11-23T10:00:00Z", "re-link")
    link = ledger.get_account_link("clinic-main")
    assert link["status"] == "LOGIN_REQUIRED" and len(ledger.link_events("clinic-main")) == 1


def test_terminal_records_get_an_expiry_only_when_retention_is_set(ddb, ledger_table) -> None:
    keep = DocumentLedger(ddb, ledger_table)
    expire = DocumentLedger(ddb, ledger_table, retention_days=30)
    keep.record_unclaimed_state(ObjectRef("b", "k", "1"), Status.REJECTED, "x")
    expire.record_unclaimed_state(ObjectRef("b", "k", "2"), Status.REJECTED, "x")
    expire.record_unclaimed_state(ObjectRef("b", "k", "3"), Status.WAITING_FOR_TAGS, "x")
    assert "expires_at" not in keep.get_object(ObjectRef("b", "k", "1"))
    assert expire.get_object(ObjectRef("b", "k", "2"))["expires_at"] > time.time() + 29 * 86400
    assert "expires_at" not in expire.get_object(ObjectRef("b", "k", "3"))


def test_an_unreachable_dynamodb_raises_ledger_error() -> None:
    client = dynamodb_client("http://127.0.0.1:9", connect_timeout=0.2, read_timeout=0.2, retries={"max_attempts": 1})
    with pytest.raises(LedgerError):
        DocumentLedger(client, "nope").record_outcome(outcome("evt-1"))


class _AnswerLost:
    """A DynamoDB client whose UpdateItem answer is lost once: DynamoDB applied the write, botocore sent it again."""

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def update_item(self, **kwargs):
        self._client.update_item(**kwargs)  # applied; its answer never came back
        return self._client.update_item(**kwargs)  # botocore's retry of the very same request


def test_a_claim_retried_after_its_answer_was_lost_is_still_won(ddb, ledger_table) -> None:
    retried = DocumentLedger(cast(Any, _AnswerLost(ddb)), ledger_table)
    claim = retried.claim(REF, lease_seconds=60)
    assert claim.won
    item = DocumentLedger(ddb, ledger_table).get_object(REF)
    assert item["status"] == "RECEIVED" and item["claim_token"] == claim.token and item["attempts"] == 1


def test_an_outcome_retried_after_its_answer_was_lost_is_recorded_not_a_duplicate(ddb, ledger_table) -> None:
    retried = DocumentLedger(cast(Any, _AnswerLost(ddb)), ledger_table)
    assert retried.record_outcome(outcome("evt-lost-answer", "document.upload_failed", failure_reason="Refused."))
    assert len(retried.get_document("1111222233334444")["events"]) == 1
    assert not DocumentLedger(ddb, ledger_table).record_outcome(outcome("evt-lost-answer"))  # a real duplicate
    assert retried.record_login_required("clinic-main", "evt-link", "2026-11-30T10:00:00Z", "re-link")


def test_retention_never_expires_what_docdrop_knows_about_a_version_that_was_or_may_have_been_sent(
    ddb, ledger_table
) -> None:
    ledger = DocumentLedger(ddb, ledger_table, retention_days=30)
    refs = {name: ObjectRef("b", f"k/{name}", "v") for name in ("review", "failed", "uploaded", "stale", "rejected")}
    for name in ("review", "failed"):
        claim = ledger.claim(refs[name], lease_seconds=60)
        status = Status.NEEDS_REVIEW if name == "review" else Status.FAILED
        ledger.record_claimed_state(refs[name], claim.token, status, "x")
    for name, document_id in (("uploaded", "1000000000000001"), ("stale", "1000000000000002")):
        claim = ledger.claim(refs[name], lease_seconds=60)
        ledger.record_submission(refs[name], claim.token, document_id)
    ledger.record_outcome(outcome("evt-u", document_id="1000000000000001"))
    assert ledger.join_outcome(ledger.get_document("1000000000000001") or {}, "m") is JoinResult.JOINED
    assert ledger.mark_stale(ledger.get_object(refs["stale"]) or {}, "no outcome")
    ledger.record_unclaimed_state(refs["rejected"], Status.REJECTED, "not a PDF")

    for name in ("review", "failed", "uploaded", "stale"):
        item = ledger.get_object(refs[name])
        assert "expires_at" not in item, name  # DynamoDB's TTL can never delete it, so it is never sent again
    assert ledger.get_object(refs["rejected"])["expires_at"] > time.time() + 29 * 86400  # never sent: may go
    assert ledger.get_document("1000000000000001")["expires_at"] > time.time() + 29 * 86400  # events may go
    assert ledger.get_object(refs["uploaded"])["status"] == "UPLOADED"
