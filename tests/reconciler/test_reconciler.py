"""Every open state closes by its deadline (promise 2): lost webhooks recovered from Cobalt's event log, STALE,
tag waits, interrupted claims, dead-lettered retries and outcomes that are not DocDrop's."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from docdrop.cobalt import CobaltClient
from docdrop.ledger import INTERRUPTED_REASON, ObjectRef, OutcomeEvent, Status
from docdrop.ledger.expression import item_values
from docdrop.reconciler import RUN_NAME
from docdrop.uploader import Deadline

from tests.reconciler.conftest import OpenLoops

AFTER_GRACE = timedelta(minutes=16)


def test_webhooks_never_sent_are_recovered_from_the_event_log_over_several_pages(loops: OpenLoops) -> None:
    ids = [loops.submit(f"lost-{i}.pdf", mrn="100001" if i % 2 else "999999") for i in range(5)]
    for i in range(4):  # other integrations' documents fill the log's pages too
        loops.send_elsewhere(f"theirs-{i}.pdf")
    loops.wait_for_outcomes(9)

    report = loops.run(AFTER_GRACE)

    assert report.complete and report.recovered_from_event_log == 5 and report.event_log_pages >= 5
    statuses = {name: loops.status(name) for name in loops.refs}
    assert statuses == {f"lost-{i}.pdf": "UPLOADED" if i % 2 else "FAILED" for i in range(5)}
    failed = loops.ledger.get_object(loops.refs["lost-0.pdf"])
    assert failed["reason"].startswith("Patient not found")  # Cobalt's own reason, as a webhook would give it
    for document_id in ids:
        events = loops.ledger.get_document(document_id)["events"]
        assert [e["source"] for e in events] == ["event_log"]
    assert loops.metrics.counts["RecoveredFromEventLog"] == 5
    assert loops.metrics.counts["DocumentsUploaded"] == 2 and loops.metrics.counts["DocumentsFailed"] == 3
    assert loops.metrics.last["OpenSubmitted"] == 0


def test_nothing_is_looked_up_before_the_outcome_grace_has_passed(loops: OpenLoops) -> None:
    loops.submit("young.pdf")
    loops.wait_for_outcomes(1)
    report = loops.run(timedelta(minutes=14))
    assert report.event_log_pages == 0 and loops.status("young.pdf") == "SUBMITTED"
    assert loops.metrics.last["OpenSubmitted"] == 1 and loops.metrics.last["OpenSubmittedPastGrace"] == 0


@pytest.mark.parametrize("shape", ["v1", "v2"])
def test_both_documented_event_log_item_shapes_are_read(loops: OpenLoops, shape: str) -> None:
    loops.sandbox.config.event_log_shape = shape
    loops.submit("shape.pdf")
    loops.wait_for_outcomes(1)
    report = loops.run(AFTER_GRACE)
    assert report.recovered_from_event_log == 1 and loops.status("shape.pdf") == "UPLOADED"


def test_an_event_both_delivered_and_found_in_the_log_is_recorded_once(loops: OpenLoops) -> None:
    delivered = loops.submit("delivered.pdf")
    loops.submit("lost.pdf")  # keeps the log search going past the delivered document's event
    loops.wait_for_outcomes(2)
    loops.deliver_as_webhook(delivered)

    report = loops.run(AFTER_GRACE)

    assert loops.status("delivered.pdf") == "UPLOADED" and loops.status("lost.pdf") == "UPLOADED"
    assert report.joined_from_ledger == 1 and report.recovered_from_event_log == 1
    events = loops.ledger.get_document(delivered)["events"]
    assert [e["source"] for e in events] == ["webhook"]  # the log's copy of the same event id was not added
    assert loops.metrics.counts["DocumentsUploaded"] == 2  # each join counted once


def test_nothing_found_is_stale_at_the_deadline_and_not_before_and_a_late_outcome_still_closes_it(
    loops: OpenLoops,
) -> None:
    document_id = loops.submit("unanswered.pdf")
    loops.wait_for_outcomes(1)
    loops.sandbox.events.clear()  # Cobalt's log has nothing for it

    assert loops.run(AFTER_GRACE).stale == 0
    assert loops.run(timedelta(hours=23, minutes=59)).stale == 0
    assert loops.status("unanswered.pdf") == "SUBMITTED"
    report = loops.run(timedelta(hours=24, minutes=1))
    assert report.stale == 1 and loops.metrics.counts["DocumentsStale"] == 1
    stale = loops.ledger.get_object(loops.refs["unanswered.pdf"])
    assert (
        stale["status"] == "STALE" and document_id in stale["reason"] and "check the patient's chart" in stale["reason"]
    )
    assert loops.run(timedelta(hours=25)).stale == 0  # STALE is not counted again

    loops.ledger.record_outcome(OutcomeEvent("late-1", "document.uploaded", document_id, "2026-11-30T10:00:00Z"))
    loops.run(timedelta(hours=25, minutes=20))
    assert loops.status("unanswered.pdf") == "UPLOADED"


def test_an_unreadable_event_log_never_makes_a_document_stale(loops: OpenLoops) -> None:
    loops.submit("unlucky.pdf")
    loops.wait_for_outcomes(1)
    unreachable = CobaltClient("http://127.0.0.1:9/v1", lambda refresh: {}, connect_timeout=0.2)
    loops.clock.offset = timedelta(hours=30)
    report = loops.reconciler(cobalt=unreachable).run(Deadline(60))
    assert report.event_log_unavailable and report.stale == 0
    assert loops.status("unlucky.pdf") == "SUBMITTED" and loops.metrics.counts["EventLogUnavailable"] == 1


def test_tags_that_never_come_are_rejected_at_the_deadline_and_not_before(loops: OpenLoops) -> None:
    ref = ObjectRef("inbox", "inbox/untagged.pdf", "v1")
    loops.refs["untagged.pdf"] = ref
    assert loops.ledger.record_unclaimed_state(
        ref, Status.WAITING_FOR_TAGS, "Waiting for tags: folder_name", missing_tags=["folder_name"]
    )
    assert loops.run(timedelta(hours=71)).tag_waits_expired == 0
    assert loops.status("untagged.pdf") == "WAITING_FOR_TAGS"
    assert loops.run(timedelta(hours=72, minutes=1)).tag_waits_expired == 1
    item = loops.ledger.get_object(ref)
    assert item["status"] == "REJECTED"
    assert item["reason"].startswith("Required tags never arrived: folder_name (waited 3 days)")
    assert loops.metrics.counts["TagWaitsExpired"] == 1
    # The version's own tags, when they finally come, still resume it: it can be claimed once more.
    assert loops.ledger.claim(ref, lease_seconds=60).won
    assert "tags_expired" not in loops.ledger.get_object(ref)


def test_an_expired_claim_whose_message_is_gone_needs_review_and_a_live_one_is_left(loops: OpenLoops) -> None:
    dead = ObjectRef("inbox", "inbox/dead-claim.pdf", "v1")
    live = ObjectRef("inbox", "inbox/live-claim.pdf", "v1")
    loops.refs.update({"dead.pdf": dead, "live.pdf": live})
    assert loops.ledger.mark_post_started(dead, loops.ledger.claim(dead, lease_seconds=0.01).token)  # it POSTed
    loops.ledger.claim(live, lease_seconds=3600)
    time.sleep(0.05)
    report = loops.run(AFTER_GRACE)
    assert report.interrupted == 1
    assert loops.ledger.get_object(dead)["status"] == "NEEDS_REVIEW"
    assert loops.ledger.get_object(dead)["reason"] == INTERRUPTED_REASON
    assert loops.status("live.pdf") == "RECEIVED"  # its holder may still be uploading: never touched
    assert loops.metrics.counts["InterruptedClaims"] == 1
    assert loops.resent == []


def test_an_expired_claim_that_never_started_its_post_is_sent_again_by_an_event_not_reviewed(loops: OpenLoops) -> None:
    """#28 item 4: the invocation died after its claim and before its POST (the claim's fence has no start): nothing
    of it can be in Cobalt, so its message (gone: the dead-letter queue, say) is replaced by an event, never a review.
    A claim of an older deploy (no fence) may have sent: it is still a review."""
    never = ObjectRef("inbox", "inbox/never-posted.pdf", "v1")
    older = ObjectRef("inbox", "inbox/older-deploy.pdf", "v1")
    loops.refs.update({"never.pdf": never, "older.pdf": older})
    loops.ledger.claim(never, lease_seconds=0.01)
    loops.ledger.claim(older, lease_seconds=0.01)
    loops.ledger._client.update_item(
        TableName=loops.ledger._table,
        Key={"pk": {"S": f"OBJ#{older.object_id}"}, "sk": {"S": "OBJ"}},
        UpdateExpression="REMOVE post_fence",
    )
    time.sleep(0.05)

    report = loops.run(AFTER_GRACE)

    assert (report.interrupted_resent, report.interrupted) == (1, 1)
    assert loops.resent == [never] and loops.status("never.pdf") == "RECEIVED"
    assert loops.status("older.pdf") == "NEEDS_REVIEW"
    assert loops.metrics.counts["InterruptedClaimsResent"] == 1
    assert loops.ledger.claim(never, lease_seconds=60).won  # the resent event's claim takes it: sent once from here


def test_a_claim_that_lapsed_before_its_post_five_times_becomes_a_review_instead_of_a_sixth_event(
    loops: OpenLoops,
) -> None:
    """Something stops every holder before its POST (a crash on this very object, say): not an event every pass."""
    stuck = ObjectRef("inbox", "inbox/stops every holder.pdf", "v1")
    loops.refs["stuck.pdf"] = stuck
    for _ in range(5):
        loops.ledger.claim(stuck, lease_seconds=0.01)
        time.sleep(0.02)

    report = loops.run(AFTER_GRACE)

    assert (report.interrupted, report.interrupted_resent) == (1, 0) and loops.resent == []
    item = loops.ledger.get_object(stuck)
    assert item["status"] == "NEEDS_REVIEW" and item["reason"].startswith("Claimed 5 times, and every holder stopped")


def test_a_pending_retry_past_the_queue_horizon_is_counted_and_says_how_to_redrive(loops: OpenLoops) -> None:
    ref = ObjectRef("inbox", "inbox/cobalt-down.pdf", "v1")
    loops.refs["down.pdf"] = ref
    claim = loops.ledger.claim(ref, lease_seconds=60)
    loops.ledger.record_claimed_state(ref, claim.token, Status.PENDING_RETRY, "Cobalt was unavailable (HTTP 503)")
    assert loops.run(timedelta(minutes=65)).dead_lettered == 0  # an hour between tries is the schedule's longest wait
    assert loops.run(timedelta(minutes=71)).dead_lettered == 1
    item = loops.ledger.get_object(ref)
    assert item["status"] == "PENDING_RETRY" and "dead-letter queue" in item["reason"]
    assert "docdrop redrive" in item["reason"] and "ingest-dlq" in item["reason"]
    assert loops.run(timedelta(minutes=72)).dead_lettered == 1  # still counted while it waits: the alarm holds
    assert loops.metrics.last["PendingRetryDeadLettered"] == 1
    # A redrive delivers it again: the claim takes the dead-letter note off.
    assert loops.ledger.claim(ref, lease_seconds=60).won
    assert "dead_lettered_at" not in loops.ledger.get_object(ref)


def test_outcomes_of_documents_docdrop_never_sent_are_never_counted_and_expire(loops: OpenLoops) -> None:
    theirs = loops.send_elsewhere("theirs.pdf")
    loops.wait_for_outcomes(1)
    loops.deliver_as_webhook(theirs)
    loops.stream(theirs)  # the ledger's stream lists it as unjoined

    assert loops.run(timedelta(minutes=10)).foreign == 0  # a submission may still be on its way
    assert "foreign_at" not in loops.ledger.get_document(theirs)
    report = loops.run(AFTER_GRACE)

    assert report.foreign == 1 and loops.metrics.counts["ForeignOutcomes"] == 1
    assert loops.metrics.counts["DocumentsUploaded"] == 0 and loops.metrics.counts["DocumentsFailed"] == 0
    document = loops.ledger.get_document(theirs)
    expected_expiry = (datetime.now(UTC) + AFTER_GRACE + timedelta(days=7)).timestamp()
    assert abs(float(document["expires_at"]) - expected_expiry) < 120  # DynamoDB's TTL deletes it a week later
    assert "outcome_unjoined" not in document  # and the foreign sweep never reads it again
    assert loops.run(timedelta(minutes=30)).foreign == 0
    assert loops.ledger.list_by_status(Status.UPLOADED) == []


def test_an_outcome_for_an_access_token_no_account_holds_is_set_aside_and_counted_apart(loops: OpenLoops) -> None:
    from docdrop.accounts import CobaltAccounts

    theirs = loops.send_elsewhere("other-practice.pdf")  # sent with the token whose reference is clinic-main
    loops.wait_for_outcomes(1)
    loops.deliver_as_webhook(theirs)
    loops.stream(theirs)  # the ledger's stream lists it as unjoined
    ours = {"accounts": {"north": {"access_token": "at_north", "reference_id": "clinic-north"}}}
    loops.clock.offset = AFTER_GRACE
    report = loops.reconciler(accounts=lambda: CobaltAccounts.from_secret(ours)).run(Deadline(60))
    assert (report.foreign, report.foreign_unknown_account) == (1, 1)
    assert loops.metrics.counts["OutcomesOfUnknownAccounts"] == 1
    assert loops.ledger.list_by_status(Status.UPLOADED) == []  # never counted as a DocDrop document


def test_a_second_pass_while_one_runs_does_nothing(loops: OpenLoops) -> None:
    assert loops.ledger.acquire_run_lease(RUN_NAME, "someone-else", 60)
    report = loops.run(AFTER_GRACE)
    assert not report.ran and loops.metrics.counts == {}
    loops.ledger.release_run_lease(RUN_NAME, "someone-else", {})
    assert loops.run(AFTER_GRACE).ran


class _SlowLog(CobaltClient):
    """Each event-log page takes 10 s of the pass's (fake) time budget."""

    def __init__(self, base: CobaltClient, now: list[float]) -> None:
        self.__dict__.update(base.__dict__)
        self._now = now
        self.pages: list[int] = []

    def webhook_events(self, **kwargs):
        self._now[0] += 10
        self.pages.append(kwargs["page"])
        return super().webhook_events(**kwargs)


def test_a_pass_out_of_time_stops_and_the_next_resumes_at_the_page_it_reached(loops: OpenLoops) -> None:
    loops.page_size = 1
    for i in range(6):
        loops.submit(f"many-{i}.pdf")
    loops.wait_for_outcomes(6)
    now = [0.0]
    slow = _SlowLog(loops.cobalt, now)
    loops.clock.offset = AFTER_GRACE

    # Each page needs the client's connect + read timeouts and the pass's reserve (38 s) left: 60 s buys 3 pages.
    first = loops.reconciler(cobalt=slow).run(Deadline(60, clock=lambda: now[0]))
    assert not first.complete and slow.pages == [1, 2, 3]
    assert first.recovered_from_event_log == 3  # what it did read is recorded and joined
    assert loops.metrics.counts["ReconcilerIncomplete"] == 1
    assert sorted(loops.status(n) for n in loops.refs) == ["SUBMITTED"] * 3 + ["UPLOADED"] * 3  # none STALE

    slow.pages.clear()
    second = loops.reconciler(cobalt=slow).run(Deadline(600, clock=lambda: now[0]))
    assert second.complete and second.recovered_from_event_log == 3
    assert slow.pages[0] == 2  # one page back from where the first pass stopped, not from the beginning
    assert all(loops.status(n) == "UPLOADED" for n in loops.refs)


def test_a_pass_reads_open_items_only_whatever_the_history(loops: OpenLoops) -> None:
    for i in range(3):
        loops.submit(f"closed-{i}.pdf")
    loops.wait_for_outcomes(3)
    for i in range(3):
        loops.deliver_as_webhook(loops.ledger.get_object(loops.refs[f"closed-{i}.pdf"])["document_id"])
    loops.run(AFTER_GRACE)  # joins them
    calls: list[str] = []
    loops.ledger._client.meta.events.register("before-call.dynamodb", lambda model, **kw: calls.append(model.name))
    report = loops.run(AFTER_GRACE)
    assert report.complete and sum(report.open_objects.values()) == 0
    assert "Scan" not in calls and report.event_log_pages == 0


def test_a_pass_reads_the_in_flight_entry_once_for_its_sweeps_and_once_for_its_gauges(loops: OpenLoops) -> None:
    loops.submit("lost.pdf")
    loops.wait_for_outcomes(1)
    dead = ObjectRef("inbox", "inbox/dead-claim.pdf", "v1")
    assert loops.ledger.mark_post_started(dead, loops.ledger.claim(dead, lease_seconds=0.01).token)
    time.sleep(0.05)
    in_flight_reads: list[str] = []

    def note(params: dict[str, Any], **kw: object) -> None:
        if params.get("IndexName") == "by_open" and {"S": "IN_FLIGHT"} in params["ExpressionAttributeValues"].values():
            in_flight_reads.append(str(params.get("Select", "ITEMS")))

    loops.ledger._client.meta.events.register("before-parameter-build.dynamodb.Query", note)
    report = loops.run(AFTER_GRACE)

    assert report.recovered_from_event_log == 1 and report.interrupted == 1  # both sweeps found their item
    assert loops.status("lost.pdf") == "UPLOADED" and loops.ledger.get_object(dead)["status"] == "NEEDS_REVIEW"
    assert report.open_objects["SUBMITTED"] == report.open_objects["RECEIVED"] == 0  # gauges read after the sweeps
    assert len(in_flight_reads) == 2


def test_an_event_logged_before_its_submission_was_recorded_is_still_found_before_stale(loops: OpenLoops) -> None:
    loops.page_size = 1
    loops.submit("first.pdf")
    # The webhook beat the upload's answer and was lost: Cobalt logged the outcome before DocDrop knew the document.
    early = loops.send_elsewhere("early.pdf")
    loops.submit("second.pdf")
    loops.submit("third.pdf")
    loops.wait_for_outcomes(4)
    assert loops.run(AFTER_GRACE).recovered_from_event_log == 3  # the cursor passes the early event's page
    ref = ObjectRef("inbox", "inbox/early.pdf", "v1")
    loops.refs["early.pdf"] = ref
    claim = loops.ledger.claim(ref, lease_seconds=60)
    loops.ledger.record_submission(ref, claim.token, early)  # recorded late, after its event was logged

    assert loops.run(AFTER_GRACE + AFTER_GRACE).recovered_from_event_log == 0  # resumed past it: not seen yet
    report = loops.run(timedelta(hours=24, minutes=20))  # due for STALE: the whole log is read first
    assert report.stale == 0 and report.recovered_from_event_log == 1
    assert loops.status("early.pdf") == "UPLOADED"


def test_open_items_of_a_ledger_from_before_the_open_index_are_indexed_once_and_then_swept(loops: OpenLoops) -> None:
    """A table written by the release with `by_status` (no `open_state` on its items, a `history` list in each): the
    first pass puts its open items into `by_open`, and its sweeps close them as usual; later passes never scan again."""
    ref = ObjectRef("inbox", "inbox/legacy.pdf", "v1")
    loops.refs["legacy.pdf"] = ref
    waited_since = (datetime.now(UTC) - timedelta(hours=80)).isoformat(timespec="microseconds")
    legacy = {
        "pk": f"OBJ#{ref.object_id}",
        "sk": "OBJ",
        "bucket": ref.bucket,
        "key": ref.key,
        "version_id": ref.version_id,
        "object_id": ref.object_id,
        "status": "WAITING_FOR_TAGS",
        "reason": "Waiting for tags: folder_name",
        "status_at": waited_since,
        "created_at": waited_since,
        "missing_tags": ["folder_name"],
        "history": [{"at": waited_since, "status": "WAITING_FOR_TAGS", "reason": "Waiting for tags: folder_name"}],
    }
    settled = {**legacy, "pk": "OBJ#settled", "object_id": "settled", "status": "UPLOADED", "history": []}
    for item in (legacy, settled):
        loops.ledger._client.put_item(TableName=loops.ledger._table, Item=item_values(item))
    assert list(loops.ledger.open_items(Status.WAITING_FOR_TAGS)) == []  # invisible to the index until indexed

    first = loops.run(timedelta(minutes=1))

    assert first.open_items_indexed == 1 and first.tag_waits_expired == 1  # indexed, then swept in the same pass
    assert loops.status("legacy.pdf") == "REJECTED"
    assert [h["status"] for h in loops.ledger.history(ref.object_id)] == ["WAITING_FOR_TAGS", "REJECTED"]
    assert loops.ledger.run_state("reconciler")["open_index"] == "done"
    assert loops.run(timedelta(minutes=2)).open_items_indexed == 0


def test_a_dead_lettered_retry_whose_message_expired_says_to_retry_and_alarms(loops: OpenLoops) -> None:
    """A dead-lettered PENDING_RETRY kept saying "redrive" after its message had expired from the dead-letter queue
    (kept 14 days), and a redrive then found nothing: its owner is now `docdrop retry`, and an alarm says so."""
    ref = ObjectRef("inbox", "inbox/down for weeks.pdf", "v1")
    claim = loops.ledger.claim(ref, lease_seconds=60)
    loops.ledger.record_claimed_state(ref, claim.token, Status.PENDING_RETRY, "Cobalt was unavailable (HTTP 503)")
    assert loops.run(timedelta(minutes=71)).dead_lettered == 1
    assert loops.run(timedelta(days=13)).dead_letter_expired == 0  # the queue still holds it: redrive works
    report = loops.run(timedelta(days=15))
    assert report.dead_letter_expired == 1 and loops.metrics.last["DeadLetteredMessagesExpired"] == 1
    item = loops.ledger.get_object(ref)
    assert item["status"] == "PENDING_RETRY" and f"docdrop retry --object {ref.object_id}" in item["reason"]
    assert "redrive finds nothing" in item["reason"]
    assert loops.run(timedelta(days=16)).dead_letter_expired == 1  # still counted while it waits
    assert loops.ledger.claim(ref, lease_seconds=60).won  # a retry resumes it
    assert "dead_letter_expired_at" not in loops.ledger.get_object(ref)


def test_the_oldest_review_is_measured_so_a_review_past_the_horizon_alarms(loops: OpenLoops) -> None:
    """NEEDS_REVIEW older than the review horizon (7 days) falls out of the automatic match: only its age says so."""
    ref = ObjectRef("inbox", "inbox/forgotten.pdf", "v1")
    claim = loops.ledger.claim(ref, lease_seconds=60)
    loops.ledger.record_claimed_state(ref, claim.token, Status.NEEDS_REVIEW, "Cobalt did not answer in time")
    assert loops.run(timedelta(days=8)).oldest_review_seconds >= timedelta(days=8).total_seconds() - 60
    assert loops.metrics.last["OldestReviewSeconds"] >= timedelta(days=8).total_seconds() - 60
