"""The reconciler against the real DynamoDB Local engine and the Cobalt sandbox, with a clock the tests move."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from docdrop.cobalt import CobaltClient
from docdrop.cobalt_events import outcome_event_from
from docdrop.contract import UploadFields
from docdrop.ledger import DocumentLedger, ObjectRef
from docdrop.outcomes import OutcomeJoiner
from docdrop.reconciler import Deadlines, PassReport, Reconciler
from docdrop.uploader import Deadline

from local.cobalt_sandbox import CobaltSandbox
from local.samples import pdf_bytes
from tests.support.stream import as_the_stream_does

AUTH = {"client_id": "ci_test_docdrop", "client_secret": "cs_test_docdrop", "access_token": "at_test_clinic_main"}
DEADLINES = Deadlines.defaults()


class RecordedMetrics:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()  # summed values (counts here are whole numbers)
        self.last: dict[str, float] = {}

    def add_metric(self, name: str, unit: str, value: float) -> None:
        self.counts[str(name)] += int(value)
        self.last[str(name)] = value


@dataclass
class Clock:
    """Real time plus an offset the test moves forward: deadlines pass without waiting for them."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class OpenLoops:
    ledger: DocumentLedger
    sandbox: CobaltSandbox
    cobalt: CobaltClient
    metrics: RecordedMetrics
    clock: Clock
    page_size: int = 2
    refs: dict[str, ObjectRef] = field(default_factory=dict)
    fingerprint_key: bytes | None = None
    resent: list[ObjectRef] = field(default_factory=list)  # versions a pass put on the ingest queue again

    def reconciler(
        self, cobalt: CobaltClient | None = None, accounts: Any = None, **deadlines: timedelta
    ) -> Reconciler:
        joiner = OutcomeJoiner(self.ledger, self.metrics, logging.getLogger("test.outcomes"))
        return Reconciler(
            self.ledger,
            cobalt or self.cobalt,
            joiner,
            Deadlines(**{**DEADLINES.__dict__, **deadlines}),
            metrics=self.metrics,
            logger=logging.getLogger("test.reconciler"),
            dead_letter_queue_arn="arn:aws:sqs:us-east-1:000000000000:ingest-dlq",
            clock=self.clock,
            event_log_page_size=self.page_size,
            fingerprint_key=(lambda: self.fingerprint_key or b"") if self.fingerprint_key else None,
            resend=lambda ref, size: self.resent.append(ref),
            **({"accounts": accounts} if accounts is not None else {}),
        )

    def run(self, after: timedelta, budget: Deadline | None = None) -> PassReport:
        """One pass as if `after` had passed since now."""
        self.clock.offset = after
        return self.reconciler().run(budget or Deadline(60))

    def submit(self, name: str, mrn: str = "100001") -> str:
        """Send one document to the sandbox as the uploader does (claim, POST, submission); its document id."""
        ref = ObjectRef("inbox", f"inbox/{name}", uuid.uuid4().hex)
        self.refs[name] = ref
        claim = self.ledger.claim(ref, lease_seconds=60)
        answer = self.cobalt.upload_document(
            UploadFields(mrn, "MedicalRecords"), name, "application/pdf", pdf_bytes(name)
        )
        assert answer.document_id is not None, answer
        self.ledger.record_submission(ref, claim.token, answer.document_id, answer.job_id)
        return answer.document_id

    def send_elsewhere(self, name: str) -> str:
        """A document another integration on the same Cobalt account uploads: DocDrop never sent it."""
        answer = self.cobalt.upload_document(
            UploadFields("100002", "MedicalRecords"), name, "application/pdf", pdf_bytes(name)
        )
        assert answer.document_id is not None
        return answer.document_id

    def wait_for_outcomes(self, count: int, timeout: float = 10.0) -> None:
        """Until the sandbox has created `count` document outcome events (its EMR robot takes 50 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for r in self.sandbox.events if r["event"]["type"].startswith("document.")) >= count:
                return
            time.sleep(0.02)
        raise AssertionError("the sandbox did not produce the outcomes in time")

    def deliver_as_webhook(self, document_id: str) -> None:
        """Record the sandbox's event for `document_id` as the webhook handler does (same envelope, same path)."""
        for record in self.sandbox.events:
            if record["event"].get("data", {}).get("document_id") == document_id:
                event = outcome_event_from(record["event"], attempt=1)
                assert event is not None and self.ledger.record_outcome(event)
                return
        raise AssertionError("no such event in the sandbox")

    def stream(self, document_id: str) -> None:
        as_the_stream_does(self.ledger, document_id, self.metrics)

    def status(self, name: str) -> str:
        item = self.ledger.get_object(self.refs[name])
        assert item is not None
        return str(item["status"])


@pytest.fixture
def loops(ddb: Any, ledger_table: str, sandbox: CobaltSandbox) -> OpenLoops:
    # No webhook is registered with the sandbox: every outcome is "never delivered" and sits in its event log only.
    return OpenLoops(
        DocumentLedger(ddb, ledger_table),
        sandbox,
        CobaltClient(sandbox.base_url, lambda refresh: AUTH),
        RecordedMetrics(),
        Clock(),
    )
