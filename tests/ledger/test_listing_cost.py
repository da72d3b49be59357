"""Listing an open status costs in proportion to what is open, never to history: 1,000 closed documents beside
3 open ones cost the same DynamoDB calls as the 3 alone (settled states are in no index: a listing of them scans)."""

from __future__ import annotations

import io
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docdrop_cli.main as cli
from docdrop.ledger import DocumentLedger, ObjectRef, OutcomeEvent, Status
from docdrop.outcomes import OutcomeJoiner
from docdrop_cli.target import Target

from tests.support.aws import dynamodb_client


class NoMetrics:
    def add_metric(self, name: str, unit: str, value: float) -> None:
        pass


def _counting(ledger: DocumentLedger) -> Counter[str]:
    calls: Counter[str] = Counter()
    ledger._client.meta.events.register("before-call.dynamodb", lambda model, **kw: calls.update([model.name]))
    return calls


def _close(ledger: DocumentLedger, count: int) -> None:
    """`count` documents through the real path: claim, submission, webhook outcome, join (8 at a time)."""
    joiner = OutcomeJoiner(ledger, NoMetrics(), logging.getLogger("test"))

    def one(i: int) -> None:
        ref = ObjectRef("inbox", f"inbox/closed-{i}.pdf", "v1")
        document_id = f"{i:016d}"
        claim = ledger.claim(ref, lease_seconds=60)
        ledger.record_submission(ref, claim.token, document_id)
        ledger.record_outcome(OutcomeEvent(f"evt-{i}", "document.uploaded", document_id, "2026-11-30T10:00:00Z"))
        joiner.join(ledger.get_document(document_id) or {}, mark=f"m-{i}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def _open(ledger: DocumentLedger, count: int) -> None:
    for i in range(count):
        ref = ObjectRef("inbox", f"inbox/open-{i}.pdf", "v1")
        claim = ledger.claim(ref, lease_seconds=60)
        ledger.record_submission(ref, claim.token, f"9{i:015d}")


def _list_submitted(endpoint: str, table: str) -> tuple[list[str], Counter[str]]:
    ledger = DocumentLedger(dynamodb_client(endpoint), table)  # its own client: only its own calls are counted
    calls = _counting(ledger)
    keys = [str(view.key) for view in ledger.list_by_status(Status.SUBMITTED, limit=50)]
    return keys, calls


def test_listing_submitted_costs_the_same_over_1000_closed_documents_as_over_none(
    ddb: Any, ledger_table: str, dynamodb_endpoint: str
) -> None:
    ledger = DocumentLedger(dynamodb_client(dynamodb_endpoint, max_pool_connections=16), ledger_table)
    _open(ledger, 3)
    alone, calls_alone = _list_submitted(dynamodb_endpoint, ledger_table)

    _close(ledger, 1000)
    beside_history, calls_with_history = _list_submitted(dynamodb_endpoint, ledger_table)

    assert sorted(alone) == sorted(beside_history) == [f"inbox/open-{i}.pdf" for i in range(3)]
    # The open index's keys, then the items themselves: the same two calls beside 1,000 settled documents.
    assert calls_alone == calls_with_history == Counter({"Query": 1, "BatchGetItem": 1})
    assert len(DocumentLedger(ddb, ledger_table).list_by_status(Status.UPLOADED, limit=1000)) == 1000


def test_docdrop_status_submitted_makes_one_query_and_one_batch_read(
    ddb: Any, ledger_table: str, dynamodb_endpoint: str, monkeypatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    ledger = DocumentLedger(ddb, ledger_table)
    _open(ledger, 3)
    _close(ledger, 20)
    calls: Counter[str] = Counter()
    original = Target.client

    def counted(self: Target, service: str) -> Any:
        client = original(self, service)
        client.meta.events.register("before-call.*", lambda model, **kw: calls.update([model.name]))
        return client

    Target.client = counted  # type: ignore[method-assign]
    out = io.StringIO()
    try:
        args = ["status", "--status", "SUBMITTED", "--show-keys", "--table", ledger_table, "--region", "us-east-1"]
        code = cli.main(args, out)
    finally:
        Target.client = original  # type: ignore[method-assign]
    assert code == 0 and calls == Counter({"Query": 1, "BatchGetItem": 1})
    assert out.getvalue().count("open-") == 3


def test_counting_received_and_submitted_together_reads_the_in_flight_entry_once(
    ddb: Any, ledger_table: str, dynamodb_endpoint: str
) -> None:
    ledger = DocumentLedger(ddb, ledger_table)
    _open(ledger, 3)  # SUBMITTED
    for i in range(2):
        ledger.claim(ObjectRef("inbox", f"inbox/claimed-{i}.pdf", "v1"), lease_seconds=60)  # RECEIVED
    _close(ledger, 5)
    counter = DocumentLedger(dynamodb_client(dynamodb_endpoint), ledger_table)
    calls = _counting(counter)

    counts = counter.count_open([Status.RECEIVED, Status.SUBMITTED])

    assert {status: count for status, (count, _) in counts.items()} == {Status.RECEIVED: 2, Status.SUBMITTED: 3}
    oldest = {status: oldest for status, (_, oldest) in counts.items()}
    first_submitted = min(
        str(ledger.get_object(ObjectRef("inbox", f"inbox/open-{i}.pdf", "v1"))["status_at"]) for i in range(3)
    )
    assert oldest[Status.SUBMITTED] == first_submitted and oldest[Status.RECEIVED] is not None
    assert calls == Counter({"Query": 1, "BatchGetItem": 1})  # one read of the shared entry, not one per status


def test_counting_a_state_of_its_own_reads_the_index_only_and_names_the_oldest(
    ddb: Any, ledger_table: str, dynamodb_endpoint: str
) -> None:
    ledger = DocumentLedger(ddb, ledger_table)
    for i in range(3):
        ref = ObjectRef("inbox", f"inbox/untagged-{i}.pdf", "v1")
        assert ledger.record_unclaimed_state(ref, Status.WAITING_FOR_TAGS, "patient_mrn is missing")
    first = ledger.get_object(ObjectRef("inbox", "inbox/untagged-0.pdf", "v1"))
    counter = DocumentLedger(dynamodb_client(dynamodb_endpoint), ledger_table)
    calls = _counting(counter)

    counts = counter.count_open([Status.WAITING_FOR_TAGS])

    assert counts == {Status.WAITING_FOR_TAGS: (3, str(first["status_at"]))}
    assert calls == Counter({"Query": 2})  # the oldest entry and the count: no item read
