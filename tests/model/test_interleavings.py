"""Promises 1 to 3 under every interleaving the actors can make, not only the stories a test's author imagined.

A Hypothesis state machine walks the actors' steps in random orders over the shipped domain code on DynamoDB Local:
S3 (puts, identical re-puts, tags later, repeated events), uploader invocations stopped before each write and their POST
(each write applied, failed, applied with its answer lost, applied twice by botocore, or the process dying before or
after it), Cobalt's answers (accepted, refused, ambiguous with and without storing, unavailable, login_required), the
EMR robot, webhook deliveries (early, late, twice, never), the stream's joiner, reconciler passes, time passing, and a
person's and an operator's decisions (resolve --filed / --resend / --dismiss, retry, relink, redrive), and reviews found
not filed, by silence, resent by a person or by the reconciler (#28; Cobalt here keeps the promise silence trusts, see
PROMISE). After every step the promises are checked against what Cobalt really did; at the end everything is let
settle and checked again.

`make test` runs a bounded walk (MODEL_EXAMPLES, 200 by default); `make model` a long one (20,000). A failure it
finds, shrunk, becomes a regular test: replayed step by step in tests/model/test_found_walks.py, or as a story of its
own (tests/ledger/test_conflicting_writers.py and the uploader's and reconciler's).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from docdrop.accounts import CobaltAccount, CobaltAccounts
from docdrop.breaker import BreakerSettings
from docdrop.ledger import (
    EVIDENCE_STATE,
    OPEN_STATE,
    RESEND_APPROVED,
    RESENDABLE,
    DocumentLedger,
    LedgerError,
    ObjectRef,
    Status,
)
from docdrop.ledger.expression import plain
from docdrop.outcomes import OutcomeJoiner
from docdrop.reconciler import Deadlines, Reconciler
from docdrop.reviews import is_silent, resend_silent_reviews
from docdrop.s3_events import ObjectEvent
from docdrop.uploader import Deadline, DocumentUploader, RetryLater
from docdrop.webhook import handle_cobalt_webhook
from freezegun import freeze_time
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from local.samples import pdf_bytes
from tests.ledger.test_write_units import item_size
from tests.model.world import (
    WEBHOOK_SECRET,
    FakeS3,
    GatedDynamoDB,
    Invocation,
    Message,
    ScriptedCobalt,
    Version,
    signed_delivery,
    utc_now,
)
from tests.support.aws import create_ledger_table, dynamodb_client
from tests.support.stream import NoMetrics

pytestmark = pytest.mark.integration

KEY = b"the model's fingerprint key"
BUCKET = "model-inbox"
CONTENTS = [pdf_bytes("page one"), pdf_bytes("page two")]
PATIENTS = ["100001", "100002"]
FOLDER = "MedicalRecords"
ACCOUNTS = CobaltAccounts((CobaltAccount("default", "at_model", "default"),))
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
FUNCTION_TIMEOUT = timedelta(seconds=90)  # template.yaml's uploader timeout
VISIBILITY = timedelta(seconds=540)  # the ingest queue's visibility timeout
MAX_RECEIVES = 6
MAX_RUNNING = 3
# Each step of a running invocation: mostly the write goes through; sometimes it fails (alone, or with the next two of
# the invocation: a burst of throttling), its answer is lost, botocore sends it twice, or the process dies before or
# after it.
WRITE_MODES = ["go"] * 10 + ["fails", "burst", "lost", "repeated", "crash", "crash_after"]
POST_MODES = (
    ["accept_uploaded"] * 4
    + ["accept_failed", "stored_uploaded", "stored_failed", "stored_then_crash_uploaded", "server_error"]
    + ["refuse", "unavailable", "login_required", "crash"]
)
TIME_STEPS = [
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=20),
    timedelta(hours=25),
    timedelta(hours=80),
]
# Cobalt's documented promise (a `document.*` event "when the upload is complete or if there was an error"), which
# "not filed, by silence" (#28) trusts: the model's Cobalt keeps it, for the documents whose id DocDrop never recorded
# (the answer lost, or received and its record lost with the process), by the time a day has passed. Documents whose
# id DocDrop recorded may wait for ever (that is what STALE is for).
PROMISE = timedelta(hours=25)
# The most each kind of item may weigh (item_size, bytes): the hot items stay within a write unit or two, and nothing
# comes near DynamoDB's 400 KB.
SIZE_BOUNDS = {"OBJ": 1500, "H#": 1000, "CDOC": 3000, "FP": 800, "TOKEN": 1000, "EVT#": 1000, "RUN": 4000}
SIZE_BOUND = 4000

# What the walks did, printed at the end (`make model` shows it): how they ended, and what they went through.
STATS: Counter[str] = Counter()

_logger = logging.getLogger("docdrop.model")
_logger.setLevel(logging.CRITICAL)


class Failed(Exception):
    pass


class DocDropModel(RuleBasedStateMachine):
    """One stack's ledger, uploader, webhook, joiner and reconciler, with the world around them (module docstring)."""

    endpoint: str = ""
    table: str = ""
    clock: Any = None

    def __init__(self) -> None:
        super().__init__()
        raw = dynamodb_client(self.endpoint)
        _empty(raw, self.table)
        self.raw = raw
        self.s3 = FakeS3(CONTENTS)
        self.cobalt = ScriptedCobalt()
        self.stream_pending: dict[str, None] = {}
        self.gated = GatedDynamoDB(raw, self._document_written)
        self.ledger = DocumentLedger(self.gated, self.table)  # type: ignore[arg-type]
        self.uploader = DocumentUploader(
            self.ledger,
            self.s3,
            self.cobalt,  # type: ignore[arg-type]
            logger=_logger,
            watched_prefix="inbox/",
            max_attempts=1,
            sleep=lambda seconds: None,
            fingerprint_key=lambda: KEY,
            duplicate_window=timedelta(days=3650),  # never passes in a walk: identical versions always meet
            max_receive_count=MAX_RECEIVES,
            breaker_settings=BreakerSettings(
                failures=3, cool_down=timedelta(minutes=1), cache_seconds=0.0, cold_wait=timedelta(0)
            ),
            accounts=lambda: ACCOUNTS,
        )
        self.joiner = OutcomeJoiner(self.ledger, NoMetrics(), _logger)
        self.reconciler = Reconciler(
            self.ledger,
            self.cobalt,  # type: ignore[arg-type]
            self.joiner,
            Deadlines.defaults(),
            metrics=NoMetrics(),
            logger=_logger,
            fingerprint_key=lambda: KEY,
            accounts=lambda: ACCOUNTS,
            resend=self._resend,
        )
        self.versions: list[Version] = []
        self.queue: list[tuple[Any, Message]] = []  # (visible at, message)
        self.dlq: list[Message] = []
        self.sent: list[Message] = []  # every message S3 ever sent, for its repeats
        self.running: list[Invocation] = []
        self.started_at: dict[int, Any] = {}
        self.known: set[str] = set()  # Cobalt documents the ledger has recorded as some object's, at some point
        self.sent_anyway: set[str] = set()  # DUPLICATE versions a person approved sending: allowed in the chart twice
        # Per reviewed version a person sent again: the documents its earlier attempts stored, which the person saw
        # refused in the chart (a person's call; the version's state is then what the resend reached).
        self.judged: dict[str, set[str]] = {}
        self.counter = 0
        self.snapshot: list[dict[str, Any]] = []  # the table's raw items, as the last check read them
        self.invocations = 0
        self.snapshot_writes = -1
        self.last_pass = -1
        self.time_steps = 0

    # ----- the world's plumbing -------------------------------------------------------------------------------------
    def _document_written(self, document_id: str) -> None:
        self.stream_pending[document_id] = None

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _enqueue(self, version: Version, event_name: str = "ObjectCreated:Put") -> None:
        message = Message(self._next(), version, event_name)
        self.sent.append(message)
        self.queue.append((utc_now(), message))

    def _resend(self, ref: ObjectRef, size: int) -> None:
        self._enqueue(next(v for v in self.versions if v.ref == ref))

    def _visible(self) -> list[Message]:
        now = utc_now()
        return [m for at, m in self.queue if at <= now]

    def _version(self, object_id: str) -> Version | None:
        return next((v for v in self.versions if v.object_id == object_id), None)

    def _read(self) -> list[dict[str, Any]]:
        """The whole table (one Scan: it holds one walk's items), kept for this step's preconditions; read again only
        when something was written since."""
        if self.snapshot_writes != self.gated.writes:
            self.snapshot, self.snapshot_writes = _scan(self.raw, self.table), self.gated.writes
        return [plain(raw) or {} for raw in self.snapshot]

    def _objects(self, fresh: bool = False) -> list[dict[str, Any]]:
        items = self._read() if fresh else [plain(raw) or {} for raw in self.snapshot]
        return [i for i in items if i["sk"] == "OBJ" and str(i["pk"]).startswith("OBJ#")]

    def _in_status(self, status: Status) -> list[dict[str, Any]]:
        """Objects in `status` as the last check read them (the preconditions' view; the rule re-checks its item)."""
        return [o for o in self._objects() if o.get("status") == status.value]

    # ----- S3 ---------------------------------------------------------------------------------------------------------
    @initialize()
    def start_the_clock(self) -> None:
        self.clock.move_to(START)  # every walk starts at the same moment (the table is empty): a walk replays exactly

    # Most documents are one patient's, so that identical pages and same-patient reviews meet often; most come tagged
    # (a version waits for its tags otherwise, and the deep interleavings need two versions at work at once).
    @rule(
        content=st.integers(0, 1),
        patient=st.sampled_from([0, 0, 0, 1]),
        tagged=st.sampled_from([True, True, True, False]),
        same_key=st.booleans(),
    )
    def a_producer_puts_a_document(self, content: int, patient: int, tagged: bool, same_key: bool) -> None:
        key = "inbox/scan.pdf" if same_key else f"inbox/scan-{self._next()}.pdf"
        version = Version(ObjectRef(BUCKET, key, f"v{self._next()}"), content, PATIENTS[patient], FOLDER, tagged)
        self.versions.append(version)
        self.s3.versions[(key, version.ref.version_id)] = version
        self._enqueue(version)

    # The same file, patient and folder put again under the same key, once or twice at once (an SDK retrying a
    # PutObject, a scanner sending twice), most often after one that ended FAILED: the versions that race for the
    # fingerprint of a file whose first version was refused, or filed and then refused by the EMR. Twice, their
    # messages may arrive in one batch: both invocations start at once.
    @precondition(lambda self: bool(self.versions))
    @rule(data=st.data(), times=st.sampled_from([1, 2, 2]), one_batch=st.booleans())
    def a_producer_puts_the_same_file_again(self, data: st.DataObject, times: int, one_batch: bool) -> None:
        refused = [o["object_id"] for o in self._in_status(Status.FAILED) + self._in_status(Status.REJECTED)]
        pool = [v for v in self.versions if v.object_id in refused] or self.versions
        self._put_again(data.draw(st.sampled_from(pool)), times, one_batch)

    def _put_again(self, original: Version, times: int, one_batch: bool) -> None:
        for _ in range(times):
            ref = ObjectRef(BUCKET, original.ref.key, f"v{self._next()}")
            version = Version(ref, original.content, original.mrn, original.folder, tagged=True)
            self.versions.append(version)
            self.s3.versions[(ref.key, ref.version_id)] = version
            self._enqueue(version)
            if one_batch and times > 1 and len(self.running) < MAX_RUNNING:
                self._after_step(self._start(self.queue[-1][1]))

    @precondition(lambda self: any(not v.tagged for v in self.versions))
    @rule(data=st.data())
    def its_tags_come_later(self, data: st.DataObject) -> None:
        version = data.draw(st.sampled_from([v for v in self.versions if not v.tagged]))
        version.tagged = True
        self._enqueue(version, "ObjectTagging:Put")

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def s3_sends_an_event_again(self, data: st.DataObject) -> None:
        message = data.draw(st.sampled_from(self.sent))
        self._enqueue(message.version, message.event_name)

    # ----- the uploader -----------------------------------------------------------------------------------------------
    @precondition(lambda self: bool(self._visible()) and len(self.running) < MAX_RUNNING)
    @rule(data=st.data())
    def an_invocation_takes_a_message(self, data: st.DataObject) -> None:
        self._after_step(self._start(data.draw(st.sampled_from(self._visible()))))

    def _start(self, message: Message) -> Invocation:
        """An invocation receives `message` (off the queue) and runs to its first stop."""
        self.queue = [(at, m) for at, m in self.queue if m is not message]
        message.receives += 1
        version, receives = message.version, message.receives
        event = ObjectEvent(message.event_name, BUCKET, version.ref.key, version.ref.version_id, None, None)
        deadline = Deadline(FUNCTION_TIMEOUT.total_seconds(), clock=lambda: utc_now().timestamp())
        invocation = Invocation(self._next(), message, lambda: self.uploader.process(event, deadline, receives))
        self.invocations += 1
        self.started_at[invocation.number] = utc_now()
        invocation.start()
        return invocation

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def an_invocation_takes_its_next_step(self, data: st.DataObject) -> None:
        invocation = data.draw(st.sampled_from(self.running))
        modes = POST_MODES if invocation.pending == "post" else WRITE_MODES
        invocation.advance(data.draw(st.sampled_from(modes)))
        self._after_step(invocation)

    # Several of an invocation's writes in a row, each going through, never past its POST: a walk reaches the deep
    # interleavings (two invocations both past their reads and at the same write, an answer waiting behind a review) in
    # a few steps instead of a dozen, where one of them would be a fault most of the time.
    @precondition(lambda self: any(i.pending != "post" for i in self.running))
    @rule(data=st.data(), steps=st.integers(1, 6))
    def an_invocation_goes_on_without_a_fault(self, data: st.DataObject, steps: int) -> None:
        invocation = data.draw(st.sampled_from([i for i in self.running if i.pending != "post"]))
        for _ in range(steps):
            invocation.advance("go")
            if invocation.done or invocation.pending == "post":
                break
        self._after_step(invocation)

    # A message taken and its invocation run, without a fault, up to its POST, which Cobalt answers as drawn: the
    # usual upload in one step, so that two uploads of one patient meet (a lost answer beside an accepted one) often.
    # Then it stops there, or its submission is not recorded: DynamoDB refuses the submission write and its retries
    # (a burst of throttling), the document id is kept for the reconciler, and the message goes back to the queue.
    @precondition(lambda self: bool(self._visible()) and len(self.running) < MAX_RUNNING)
    @rule(data=st.data(), answer=st.sampled_from(POST_MODES), then=st.sampled_from(["stop", "stop", "not recorded"]))
    def an_upload_runs_to_its_post_and_cobalt_answers(self, data: st.DataObject, answer: str, then: str) -> None:
        invocation = self._start(data.draw(st.sampled_from(self._visible())))
        while not invocation.done and invocation.pending != "post":
            invocation.advance("go")
        if not invocation.done:
            invocation.advance(answer)
        if then == "not recorded" and answer.startswith("accept") and not invocation.done:
            while not invocation.done and not invocation.pending.startswith("update_item OBJ"):
                invocation.advance("go")  # the breaker's write comes first: the burst is the submission's
            if not invocation.done:
                invocation.advance("burst")
            while not invocation.done:
                invocation.advance("go")
        self._after_step(invocation)

    # Two invocations a write at a time, in turns, without a fault (never past a POST): both past their reads before
    # either writes, as two identical versions racing for one fingerprint are.
    @precondition(lambda self: sum(1 for i in self.running if i.pending != "post") >= 2)
    @rule(data=st.data(), steps=st.integers(1, 4))
    def two_invocations_go_on_in_turns(self, data: st.DataObject, steps: int) -> None:
        ready = [i for i in self.running if i.pending != "post"]
        first = data.draw(st.sampled_from(ready))
        second = data.draw(st.sampled_from([i for i in ready if i is not first]))
        for _ in range(steps):
            for invocation in (first, second):
                if not invocation.done and invocation.pending != "post":
                    invocation.advance("go")
        for invocation in (first, second):
            self._after_step(invocation)

    def _after_step(self, invocation: Invocation) -> None:
        if not invocation.done:
            if invocation not in self.running:
                self.running.append(invocation)
            return
        if invocation in self.running:
            self.running.remove(invocation)
        message = invocation.message
        result = invocation.result
        # RetryLater, or a DynamoDB call that failed: the batch handler returns the message to the queue (by design).
        # Anything else is a bug.
        if invocation.error is not None and not isinstance(invocation.error, RetryLater | LedgerError | ClientError):
            trace = "".join(traceback.format_exception(invocation.error)[-6:])
            raise Failed(f"an uploader step raised {type(invocation.error).__name__}: {invocation.error}\n{trace}")
        if invocation.crashed or invocation.error is not None or result.retry_later:
            if not invocation.crashed and not any(i.message.version is message.version for i in self.running):
                # Nobody else is at work on this version: a settled one's message may come back once (a write failed,
                # or the state moved under a step), never twice in a row: that is a loop to the dead-letter queue (a
                # false alarm, and again after a redrive).
                item = self.ledger.get_object(message.version.ref) or {}
                settled = item.get("status") in ("SUBMITTED", "UPLOADED", "FAILED", "STALE")
                message.settled_returns = message.settled_returns + 1 if settled else 0
                assert message.settled_returns < 2, (
                    f"the message of a {item.get('status')} object keeps returning to the queue: a loop to the DLQ"
                )
            delay = VISIBILITY
            if result is not None and result.retry_in_seconds:
                delay = timedelta(seconds=result.retry_in_seconds)
            message.last_end = "crash" if invocation.crashed else "retry"
            if message.receives >= MAX_RECEIVES:
                self.dlq.append(message)
            else:
                self.queue.append((utc_now() + delay, message))

    # ----- Cobalt, the EMR and the webhook -------------------------------------------------------------------------
    @precondition(lambda self: any(not d.processed for d in self.cobalt.documents.values()))
    @rule(data=st.data())
    def the_emr_robot_files_or_refuses_a_document(self, data: st.DataObject) -> None:
        waiting = [d.document_id for d in self.cobalt.documents.values() if not d.processed]
        self.cobalt.process(data.draw(st.sampled_from(waiting)), utc_now())

    # The usual way an outcome arrives, in one step: the EMR robot is done, its webhook is delivered once, and the
    # stream joins it. The rules above take the same three apart, for the unusual orders.
    @precondition(lambda self: any(not d.processed for d in self.cobalt.documents.values()))
    @rule(data=st.data())
    def cobalt_reports_a_document(self, data: st.DataObject) -> None:
        waiting = [d.document_id for d in self.cobalt.documents.values() if not d.processed]
        self._report(data.draw(st.sampled_from(waiting)))

    # The EMR refuses a document (its version ends FAILED, still holding its file's fingerprint), and the producer's
    # SDK puts the same file again twice, both in one batch: the race of two identical versions past a FAILED one.
    # Then both stop there, or both go on a write at a time in turns, without a fault, and Cobalt answers each POST as
    # drawn: both past their reads before either writes.
    @precondition(lambda self: any(not d.processed for d in self.cobalt.documents.values()))
    @rule(data=st.data(), then=st.sampled_from(["stop", "in turns"]))
    def the_emr_refuses_a_document_and_its_file_is_put_again_twice(self, data: st.DataObject, then: str) -> None:
        document = data.draw(st.sampled_from([d for d in self.cobalt.documents.values() if not d.processed]))
        for invocation in [i for i in self.running if i.message.version.object_id == document.object_id]:
            while not invocation.done:  # its upload records what Cobalt answered, without a fault
                invocation.advance("accept_uploaded" if invocation.pending == "post" else "go")
            self._after_step(invocation)
        document.uploaded = False  # the EMR's decision, whatever the upload expected (Cobalt only learns it now)
        self._report(document.document_id)
        version = self._version(document.object_id)
        if version is None:
            return
        STATS[f"refused files put again twice in one batch, then {then}"] += 1
        before = set(self.running)
        self._put_again(version, 2, one_batch=True)
        racing = [i for i in self.running if i not in before]
        if then == "stop" or len(racing) < 2:
            return
        while any(not i.done and i.pending != "post" for i in racing):
            for invocation in racing:
                if not invocation.done and invocation.pending != "post":
                    invocation.advance("go")
        for invocation in racing:
            if not invocation.done:
                invocation.advance(data.draw(st.sampled_from(POST_MODES)))
            self._after_step(invocation)

    def _report(self, document_id: str) -> None:
        """The EMR robot is done with a document, its webhook is delivered once, and the stream joins it."""
        event = self.cobalt.process(document_id, utc_now())
        self.cobalt.deliveries.remove(event)
        self._deliver(event, 1)
        if document_id in self.stream_pending:
            self._stream(document_id)

    @precondition(lambda self: bool(self.cobalt.deliveries))
    @rule(data=st.data(), how=st.sampled_from(["once", "once", "twice", "never"]))
    def cobalt_delivers_a_webhook(self, data: st.DataObject, how: str) -> None:
        event = data.draw(st.sampled_from(self.cobalt.deliveries))
        self.cobalt.deliveries.remove(event)
        for attempt in range({"once": 1, "twice": 2, "never": 0}[how]):
            self._deliver(event, attempt + 1)

    def _deliver(self, event: dict[str, Any], attempt: int) -> None:
        body, headers = signed_delivery(event, attempt)
        answer = handle_cobalt_webhook(
            body,
            headers,
            ledger=self.ledger,
            load_secrets=lambda refresh: {"current": WEBHOOK_SECRET},
            metrics=NoMetrics(),
            fingerprint_key=lambda: KEY,
        )
        if answer.status_code != 200:
            raise Failed(f"the webhook answered {answer.status_code} to a signed delivery: {answer.body}")

    @precondition(lambda self: bool(self.stream_pending))
    @rule(data=st.data())
    def the_stream_joins_a_document(self, data: st.DataObject) -> None:
        document_id = data.draw(st.sampled_from(list(self.stream_pending)))
        self._stream(document_id)

    def _stream(self, document_id: str) -> None:
        self.stream_pending.pop(document_id, None)
        image = self.ledger.get_document(document_id) or {}
        if _stream_filter_passes(image):
            self.joiner.join(image, mark=f"stream-{self._next()}")

    # ----- the reconciler and the clock -----------------------------------------------------------------------------
    @precondition(lambda self: self._changed_since_last_pass())
    @rule()
    def a_reconciler_pass(self) -> None:
        report = self.reconciler.run(Deadline(300, clock=lambda: utc_now().timestamp()))
        STATS["reviews found silent"] += report.reviews_found_silent
        self.last_pass = self.time_steps

    def _changed_since_last_pass(self) -> bool:
        """A pass's work is what came due since the last: with no time passed, another is not worth a step (its
        writes are conditional on what it reads, so a pass at the same moment as a writer is still one interleaving)."""
        return self.last_pass != self.time_steps

    @rule(step=st.sampled_from(TIME_STEPS))
    def time_passes(self, step: timedelta) -> None:
        if step >= PROMISE:  # Cobalt's promise, which silence trusts: the EMR is done with a document within hours
            for document in list(self.cobalt.documents.values()):
                if not document.processed and document.document_id not in self.known:
                    self.cobalt.process(document.document_id, utc_now())
        self.clock.tick(step)
        self.time_steps += 1
        for invocation in list(self.running):  # Lambda kills an invocation at its timeout, wherever it is
            if utc_now() - self.started_at[invocation.number] > FUNCTION_TIMEOUT:
                while not invocation.done:
                    invocation.advance("crash")
                self._after_step(invocation)

    # ----- a person and an operator ---------------------------------------------------------------------------------
    def _chart(self, version: Version) -> tuple[bool, bool]:
        """What a person sees in the chart for a version: (filed, EMR done with everything Cobalt stored of it)."""
        stored = self.cobalt.stored_for(version.object_id)
        return any(d.processed and d.uploaded for d in stored), all(d.processed for d in stored)

    @precondition(lambda self: bool(self._in_status(Status.NEEDS_REVIEW)))
    @rule(data=st.data(), decision=st.sampled_from(["filed", "resend", "dismiss"]))
    def a_person_resolves_a_review(self, data: st.DataObject, decision: str) -> None:
        self._decide(data.draw(st.sampled_from(self._in_status(Status.NEEDS_REVIEW))), decision)

    # The usual life of an upload whose submission was not recorded (Cobalt accepted it, the write failed, the document
    # id was kept for the reconciler), in one step: its message comes back after the queue's visibility and runs
    # without a fault (the lapsed claim becomes a review), the EMR files or refuses the document (its webhook on time,
    # or late), and a person decides, before any reconciler pass records the kept submission.
    @precondition(lambda self: bool(self._in_status(Status.RECEIVED)))
    @rule(
        data=st.data(),
        emr=st.sampled_from(["files it", "refuses it", "refuses it, its webhook late"]),
        decision=st.sampled_from(["filed", "resend", "dismiss"]),
    )
    def a_kept_submission_becomes_a_review_and_a_person_decides(
        self, data: st.DataObject, emr: str, decision: str
    ) -> None:
        claimed = data.draw(st.sampled_from(self._in_status(Status.RECEIVED)))
        version = self._version(str(claimed["object_id"]))
        if version is None or any(i.message.version is version for i in self.running):
            return
        if self.ledger.kept_submission(version.object_id) is None:
            return
        self.time_passes(VISIBILITY)
        message = next((m for m in self._visible() if m.version is version), None)
        if message is None:
            return
        invocation = self._start(message)
        while not invocation.done:
            invocation.advance("accept_uploaded" if invocation.pending == "post" else "go")
        self._after_step(invocation)
        for document in self.cobalt.stored_for(version.object_id):
            if not document.processed:
                document.uploaded = emr == "files it"  # the EMR's decision (Cobalt only learns it now)
                if emr.endswith("late"):  # the EMR is done, and its webhook waits (cobalt_delivers_a_webhook)
                    self.cobalt.process(document.document_id, utc_now())
                else:
                    self._report(document.document_id)
        review = self.ledger.get_object(version.ref) or {}
        if review.get("status") == Status.NEEDS_REVIEW.value:
            STATS[f"kept submissions reviewed, the EMR {emr}, then {decision}"] += 1
            self._decide(review, decision)

    def _decide(self, review: dict[str, Any], decision: str) -> None:
        """A person's decision on a review, as `docdrop resolve` records it, from what the chart shows."""
        version = self._version(str(review["object_id"]))
        assert version is not None
        filed, settled = self._chart(version)
        if decision == "filed":  # the person finds it in the chart: Cobalt's document of this very version
            found = [d for d in self.cobalt.stored_for(version.object_id) if d.processed and d.uploaded]
            if found:
                document = self.ledger.get_document(found[0].document_id) or {"document_id": found[0].document_id}
                self.ledger.link_review(review, document, "Filed: a person found it in the chart", "person")
        elif decision == "resend" and settled and not filed:  # waited for the EMR, and it is not in the chart
            reason = "Resend approved by a person: not in the chart"
            if self.ledger.approve_resend(version.ref, reason, "person", status=Status.NEEDS_REVIEW):
                judged = self.judged.setdefault(version.object_id, set())
                judged.update(d.document_id for d in self.cobalt.stored_for(version.object_id))
                self._enqueue(version)  # as `docdrop resolve --not-filed --resend` does
        elif decision == "dismiss" and not filed:
            self.ledger.dismiss_review(review, "Dismissed by a person: not needed", "person")

    # A review waits out the horizon (SilentAfterHours), and a reconciler pass reads Cobalt's whole log for it: the
    # usual road to "not filed, by silence" (or to a person, when something in the log or the ledger could be its),
    # in one step.
    # Then, as drawn, the silent ones are resent at once (a person, or the reconciler), or later by the rule below.
    @precondition(lambda self: bool(self._in_status(Status.NEEDS_REVIEW)))
    @rule(then=st.sampled_from(["later", "a person", "the reconciler"]))
    def a_review_waits_out_the_horizon(self, then: str) -> None:
        self.time_passes(Deadlines.defaults().silent_after + timedelta(hours=1))
        self.a_reconciler_pass()
        if then != "later" and any(is_silent(r) for r in self._in_status(Status.NEEDS_REVIEW)):
            self.a_person_or_the_reconciler_resends_silent_reviews(then)

    # The same road from its start: an upload whose POST Cobalt answers 500 (nothing stored, and DocDrop cannot know),
    # a review, the horizon, a pass, and the silent ones resent as drawn.
    @precondition(lambda self: bool(self._visible()) and len(self.running) < MAX_RUNNING)
    @rule(data=st.data(), then=st.sampled_from(["later", "a person", "the reconciler"]))
    def an_unanswered_upload_waits_out_the_horizon(self, data: st.DataObject, then: str) -> None:
        invocation = self._start(data.draw(st.sampled_from(self._visible())))
        while not invocation.done:
            invocation.advance("server_error" if invocation.pending == "post" else "go")
        self._after_step(invocation)
        if self._in_status(Status.NEEDS_REVIEW):
            self.a_review_waits_out_the_horizon(then)

    # Reviews found not filed, by silence (the reconciler read Cobalt's whole log past the horizon and found nothing of
    # theirs): a person's `docdrop resolve --silent --resend`, or the reconciler's own pass with ResendSilentReviews.
    @precondition(lambda self: any(is_silent(r) for r in self._in_status(Status.NEEDS_REVIEW)))
    @rule(who=st.sampled_from(["a person", "the reconciler"]))
    def a_person_or_the_reconciler_resends_silent_reviews(self, who: str) -> None:
        if who == "a person":
            done = resend_silent_reviews(self.ledger, "person", self._resend)
        else:
            reconciler = Reconciler(
                self.ledger,
                self.cobalt,  # type: ignore[arg-type]
                self.joiner,
                dataclasses.replace(Deadlines.defaults(), resend_silent=True),
                metrics=NoMetrics(),
                logger=_logger,
                fingerprint_key=lambda: KEY,
                accounts=lambda: ACCOUNTS,
                resend=self._resend,
            )
            report = reconciler.run(Deadline(300, clock=lambda: utc_now().timestamp()))
            done = [("", "sent")] * report.reviews_resent_by_silence
        STATS[f"silent reviews resent by {who}"] += sum(1 for _, what in done if what == "sent")

    # `docdrop resolve --resend --key K`: a person says a DUPLICATE is a different page after all, and it is sent once.
    @precondition(lambda self: bool(self._duplicates_not_approved()))
    @rule(data=st.data())
    def a_person_sends_a_duplicate_anyway(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(self._duplicates_not_approved()))
        version = self._version(str(item["object_id"]))
        assert version is not None
        reason = "Resend approved by a person: a different page after all"
        if self.ledger.approve_resend(version.ref, reason, "person", status=Status.DUPLICATE):
            STATS["duplicates a person sent anyway"] += 1
            self.sent_anyway.add(version.object_id)
            self._enqueue(version)

    def _duplicates_not_approved(self) -> list[dict[str, Any]]:
        return [o for o in self._in_status(Status.DUPLICATE) if not o.get(RESEND_APPROVED)]

    @precondition(lambda self: bool(self._in_status(Status.PENDING_RETRY) + self._in_status(Status.BLOCKED)))
    @rule(data=st.data())
    def an_operator_runs_docdrop_retry(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(self._in_status(Status.PENDING_RETRY) + self._in_status(Status.BLOCKED)))
        version = self._version(str(item["object_id"]))
        assert version is not None
        self._enqueue(version)

    @precondition(lambda self: any(i["pk"]["S"] == "TOKEN#default" and i["sk"]["S"] == "TOKEN" for i in self.snapshot))
    @rule()
    def an_operator_relinks_the_account(self) -> None:
        self.ledger.record_relink("default", by="docdrop accounts relink (model)")

    @precondition(lambda self: bool(self.dlq))
    @rule()
    def an_operator_runs_docdrop_redrive(self) -> None:
        for message in self.dlq:
            message.receives = 0
            self.queue.append((utc_now(), message))
        self.dlq = []

    # ----- the promises, after every step ---------------------------------------------------------------------------
    @invariant()
    def the_promises_hold(self) -> None:
        items = self._read()
        objects = {str(i["object_id"]): i for i in items if i["sk"] == "OBJ" and str(i["pk"]).startswith("OBJ#")}
        documents = {str(i["document_id"]): i for i in items if i["sk"] == "CDOC"}
        truth = self.cobalt.documents
        # 1. At most once into the chart: no version twice, no identical file, patient and folder twice.
        filed = [d for d in truth.values() if d.uploaded]
        twice = [o for o, n in Counter(d.object_id for d in filed).items() if n > 1]
        assert not twice, f"a version reached Cobalt twice (object {twice[0]})"
        unasked = [d for d in filed if d.object_id not in self.sent_anyway]  # a person may allow a second copy
        same = [k for k, n in Counter((d.content, d.mrn, d.folder) for d in unasked).items() if n > 1]
        assert not same, "the same file, patient and folder reached Cobalt twice"
        # 2. The ledger says only what Cobalt did: a document is only ever its own object's.
        for object_id, item in objects.items():
            document_id = item.get("document_id")
            if document_id:
                assert str(document_id) in truth, f"object {object_id} names a document Cobalt never stored"
                assert truth[str(document_id)].object_id == object_id, f"object {object_id} holds another's document"
                self.known.add(str(document_id))
            status = item.get("status")
            if status == Status.UPLOADED.value:
                assert document_id and truth[str(document_id)].uploaded, f"object {object_id} UPLOADED, but not filed"
            if status == Status.FAILED.value:
                refused = self.cobalt.refusals.get(object_id, 0) > 0
                assert refused or (document_id and not truth[str(document_id)].uploaded), f"{object_id} FAILED wrongly"
            if is_silent(item):  # "not filed, by silence" says Cobalt holds nothing of it (but what a person judged)
                stored = {d.document_id for d in self.cobalt.stored_for(object_id)} - self.judged.get(object_id, set())
                assert not stored, f"review {object_id} was found silent, and Cobalt holds its document {stored}"
        for document_id, item in documents.items():
            if item.get("object_id"):
                assert document_id in truth and truth[document_id].object_id == item["object_id"], (
                    f"Cobalt document {document_id} is linked to an object that did not send it"
                )
                self.known.add(document_id)
        # 3. Every open item is in the open index, with no expiry, and an owner.
        for object_id, item in objects.items():
            status = Status(str(item["status"]))
            state = OPEN_STATE.get(status)
            listed = state or EVIDENCE_STATE.get(status)  # a dismissed review stays listed, as a rival, never as open
            assert item.get("open_state") == listed, f"object {object_id} {status} is under {item.get('open_state')}"
            if state is not None:
                assert item.get("open_at") and not item.get("expires_at"), f"open object {object_id} may expire"
            if status is Status.RECEIVED:
                assert item.get("lease_until"), f"claim {object_id} has no lease"
            # A person's approval to send again belongs to the review or duplicate it was given for: kept past it, a
            # later redelivery would take it as an approval to send a settled version (a loop, or a second copy).
            assert not item.get(RESEND_APPROVED) or status in RESENDABLE, (
                f"object {object_id} is {status} and still carries a person's approval to send it again"
            )
        for message in self.dlq:  # the dead-letter queue's alarm means "Cobalt stayed unavailable", never a loop
            item = objects.get(message.version.object_id) or {}
            if message.last_end == "retry":
                assert item.get("status") not in ("SUBMITTED", "UPLOADED", "FAILED", "STALE"), (
                    f"the message of a settled object ({item.get('status')}) went to the dead-letter queue"
                )
        # 4. No item passes its size bound.
        for item in self.snapshot:
            kind = next((k for k in SIZE_BOUNDS if item["sk"]["S"].startswith(k)), item["pk"]["S"].split("#")[0])
            bound = SIZE_BOUNDS.get(kind, SIZE_BOUND)
            assert item_size(item) <= bound, f"a {kind} item weighs {item_size(item)} bytes (bound {bound})"

    # ----- the end: everything settles ------------------------------------------------------------------------------
    def teardown(self) -> None:
        try:
            self._settle()
            self.the_promises_hold()
            self._nothing_open_and_every_accepted_version_linked()
            STATS["walks"] += 1
            STATS["versions"] += len(self.versions)
            STATS["documents stored by Cobalt"] += len(self.cobalt.documents)
            STATS["uploader invocations"] += self.invocations
            STATS.update(f"ended {o['status']}" for o in self._objects())
        finally:
            for invocation in self.running:  # never leave a thread waiting at a gate
                while not invocation.done:
                    invocation.advance("crash")

    def _settle(self) -> None:
        for invocation in list(self.running):
            while not invocation.done:
                invocation.advance("accept_uploaded" if invocation.pending == "post" else "go")
            self._after_step(invocation)
        self.ledger.record_relink("default", by="the end of the walk")
        self.an_operator_runs_docdrop_redrive()
        # Rounds of: the queue drained without faults, the EMR done, every webhook delivered, the stream, then time
        # (the outcome grace, then the STALE and tag deadlines) and a reconciler pass.
        for step in (timedelta(minutes=20), timedelta(hours=30), timedelta(hours=80)):
            for _ in range(3):
                self._drain()
                for document in list(self.cobalt.documents.values()):
                    if not document.processed:
                        self.cobalt.process(document.document_id, utc_now())
                for event in list(self.cobalt.deliveries):
                    self.cobalt.deliveries.remove(event)
                    self._deliver(event, 1)
                for document_id in list(self.stream_pending):
                    self._stream(document_id)
                if not self._visible():
                    break
            self.clock.tick(step)
            self.reconciler.run(Deadline(300, clock=lambda: utc_now().timestamp()))
            for document_id in list(self.stream_pending):
                self._stream(document_id)
        self._drain()

    def _drain(self) -> None:
        """Every visible message, each invocation run to its end with nothing going wrong."""
        for _ in range(100):
            visible = self._visible()
            if not visible:
                return
            invocation = self._start(visible[0])
            while not invocation.done:
                invocation.advance("accept_uploaded" if invocation.pending == "post" else "go")
            self._after_step(invocation)
        raise Failed("the queue never drained")

    def _nothing_open_and_every_accepted_version_linked(self) -> None:
        objects = {str(o["object_id"]): o for o in self._objects(fresh=True)}
        for object_id, item in objects.items():
            assert item["status"] not in ("RECEIVED", "SUBMITTED", "WAITING_FOR_TAGS", "PENDING_RETRY"), (
                f"object {object_id} is still {item['status']} after everything settled"
            )
        for version in self.versions:
            item = objects.get(version.object_id) or {}
            judged = self.judged.get(version.object_id, set())
            stored = [d for d in self.cobalt.stored_for(version.object_id) if d.document_id not in judged]
            if not stored:
                continue
            linked = str(item.get("document_id")) in {d.document_id for d in stored}
            known = any(d.document_id in self.known for d in stored)
            allowed = {"NEEDS_REVIEW"} | ({"DISMISSED"} if not known else set())  # a person's call, on the chart
            assert linked or item.get("status") in allowed, (
                f"object {version.object_id}, which Cobalt accepted, ended {item.get('status')} without its document"
            )


def _stream_filter_passes(image: dict[str, Any]) -> bool:
    """template.yaml's filter on the joiner's stream source: an outcome with its object, or a new unjoined one."""
    if image.get("sk") != "CDOC" or not image.get("outcome"):
        return False
    if image.get("object_id"):
        return True
    return not image.get("outcome_unjoined") and not image.get("foreign_at")


def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _empty(client: Any, table: str) -> None:
    keys = [{"pk": i["pk"], "sk": i["sk"]} for i in _scan(client, table)]
    for start in range(0, len(keys), 25):
        requests = [{"DeleteRequest": {"Key": k}} for k in keys[start : start + 25]]
        client.batch_write_item(RequestItems={table: requests})


@pytest.mark.timeout(0)  # a walk's length is bounded by MODEL_EXAMPLES, not by the suite's per-test limit
def test_the_promises_hold_under_every_interleaving(dynamodb_endpoint: str, ddb: Any) -> None:
    examples = int(os.environ.get("MODEL_EXAMPLES") or 200)
    replay = os.environ.get("MODEL_REPLAY") == "1"  # only the failures Hypothesis's database keeps, replayed
    shrink = [] if os.environ.get("MODEL_SHRINK") == "0" else [Phase.shrink]  # make model-reverts: found is enough
    DocDropModel.endpoint = dynamodb_endpoint
    DocDropModel.table = create_ledger_table(ddb)
    # Every read of the clock by DocDrop moves it on by half a millisecond, so that no two writes share a time; the
    # libraries' own reads (HTTP, signing, Hypothesis) see real time and move nothing: a walk replays exactly.
    ignore = ["botocore", "urllib3", "requests", "hypothesis", "_pytest", "pytest_timeout", "threading"]
    with freeze_time(START, auto_tick_seconds=0.0005, ignore=ignore) as clock:
        DocDropModel.clock = clock
        run_state_machine_as_test(
            DocDropModel,
            settings=settings(
                max_examples=examples,
                stateful_step_count=40,
                deadline=None,
                # CI's walk is the same each run; `make model`'s shards explore anew, each its own walks.
                derandomize=os.environ.get("MODEL_DERANDOMIZE", "1") == "1" and not replay,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.reuse] if replay else [Phase.explicit, Phase.reuse, Phase.generate, *shrink],
                print_blob=True,
            ),
        )
    print("\nmodel: " + ", ".join(f"{name} {count}" for name, count in sorted(STATS.items())))
    assert replay or STATS["walks"] >= examples // 2
    assert STATS["documents stored by Cobalt"] > 0  # the walks did go somewhere
