"""The world the model-based test drives: every actor of DocDrop's promises, small enough to reason about.

- `Invocation`: one uploader invocation in a thread of its own that stops before each ledger write and before its POST,
  and goes on only when the test says how: the write happens, its answer is lost, or the process dies before or after.
- `GatedDynamoDB`: the real DynamoDB Local client, with those stops for the calls an invocation makes (no one else's).
- `ScriptedCobalt`: Cobalt as its documentation describes it, answering each POST as the test scripts it, keeping the
  truth (which object version each stored document came from, what the EMR will say) and its event log.
- `FakeS3`: versions with their bytes and tags, as the uploader reads them.
Nothing here decides what DocDrop does: the domain code under test is the shipped one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError
from docdrop.cobalt import EventLogPage
from docdrop.cobalt_answers import CobaltAnswer, classify_exception, classify_response
from docdrop.cobalt_events import envelope_from_log_item
from docdrop.contract import UploadFields
from docdrop.ledger import ObjectRef

# local.aws_calls: GatedDynamoDB only passes the domain's calls on; they are still the domain's (tests/iam checks them).
AWS_CALLS_FORWARDER = True
GATE_SECONDS = 60.0  # a thread that neither reaches its next stop nor ends in this long is a deadlock: a failure
WEBHOOK_SECRET = "whsec_model"


class Crash(BaseException):
    """The invocation's process died here (Lambda killed it, or it ran out of time): nothing after this ran."""


_current = threading.local()


def current() -> Invocation | None:
    found: Invocation | None = getattr(_current, "invocation", None)
    return found


class Invocation:
    """One uploader invocation on one message, run a step at a time (see the module docstring)."""

    def __init__(self, number: int, message: Message, run: Callable[[], Any]) -> None:
        self.number = number
        self.message = message
        self.pending = ""  # what it waits to do: "post", or a DynamoDB write and the key it writes
        self.mode = "go"
        self.done = False
        self.crashed = False
        self.failing = 0  # how many more of its writes DynamoDB refuses (a burst of throttling)
        self.result: Any = None
        self.error: BaseException | None = None
        self._go = threading.Semaphore(0)
        self._arrived = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._main, args=(run,), daemon=True, name=f"invocation-{number}")

    def start(self) -> None:
        self._thread.start()
        self._wait()

    def advance(self, mode: str) -> None:
        """Let the invocation take its pending step in `mode`, and wait until it stops again or ends."""
        assert not self.done
        self.mode = mode
        self._go.release()
        self._wait()

    def _wait(self) -> None:
        if not self._arrived.acquire(timeout=GATE_SECONDS):
            raise AssertionError(f"invocation {self.number} neither stopped nor ended (waiting to: {self.pending})")

    def _main(self, run: Callable[[], Any]) -> None:
        _current.invocation = self
        try:
            self.result = run()
        except Crash:
            self.crashed = True
        except BaseException as exc:  # kept: the test tells a RetryLater (expected) from anything else (a failure)
            self.error = exc
        finally:
            self.done = True
            self._arrived.release()

    def gate(self, what: str) -> str:
        """Called on the invocation's own thread: stop before `what` until told how to go on."""
        self.pending = what
        self._arrived.release()
        if not self._go.acquire(timeout=GATE_SECONDS * 2):
            raise Crash  # the test was torn down around it
        return self.mode


WRITES = frozenset({"update_item", "put_item", "transact_write_items", "delete_item", "batch_write_item"})


def _written_keys(operation: str, kwargs: dict[str, Any]) -> list[str]:
    if operation == "transact_write_items":
        found = []
        for item in kwargs["TransactItems"]:
            ((_, request),) = item.items()
            found.append(request["Key"]["pk"]["S"] if "Key" in request else request["Item"]["pk"]["S"])
        return found
    return [kwargs["Key"]["pk"]["S"] if "Key" in kwargs else kwargs["Item"]["pk"]["S"]]


class GatedDynamoDB:
    """The DynamoDB Local client; an invocation's writes stop at its gate first, and every Cobalt document written is
    noted for the stream (the ledger's DynamoDB stream, which the joiner reads)."""

    def __init__(self, client: Any, on_document_written: Callable[[str], None]) -> None:
        self._client = client
        self._on_document_written = on_document_written
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name not in WRITES:
            return call

        def gated(**kwargs: Any) -> Any:
            keys = _written_keys(name, kwargs)
            invocation = current()
            mode = invocation.gate(f"{name} {','.join(k.split('#')[0] for k in keys)}") if invocation else "go"
            if invocation is not None and mode == "burst":  # DynamoDB throttles this one and its next two writes
                invocation.failing = 3
            if invocation is not None and invocation.failing > 0:
                invocation.failing -= 1
                mode = "fails"
            if mode == "crash":
                raise Crash
            if mode == "fails":  # refused, not applied: the caller sees an error it may retry
                error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}}
                raise ClientError(error, name)  # type: ignore[arg-type]
            result = call(**kwargs)
            if mode == "repeated":  # botocore re-sent a write DynamoDB applied: the retry's own answer is returned
                result = call(**kwargs)
            self.writes += 1
            for key in keys:
                if key.startswith("CDOC#"):
                    self._on_document_written(key.removeprefix("CDOC#"))
            if mode == "lost":  # applied, and the answer never came back
                raise EndpointConnectionError(endpoint_url="http://127.0.0.1/dynamodb")
            if mode == "crash_after":
                raise Crash
            return result

        return gated


@dataclasses.dataclass
class Version:
    ref: ObjectRef
    content: int  # which of the pool's contents
    mrn: str
    folder: str
    tagged: bool

    @property
    def object_id(self) -> str:
        return self.ref.object_id


@dataclasses.dataclass
class Message:
    """An S3 event on the ingest queue: the version it names, and how often it was received."""

    number: int
    version: Version
    event_name: str = "ObjectCreated:Put"
    receives: int = 0
    last_end: str = ""  # how its last delivery ended: "retry" (its object asked for it), "crash" (the process died)
    settled_returns: int = 0  # deliveries in a row that returned it although its object was settled


class FakeS3:
    """The inbox bucket's versions, as GetObject and GetObjectTagging answer for them."""

    def __init__(self, contents: list[bytes]) -> None:
        self.contents = contents
        self.versions: dict[tuple[str, str], Version] = {}

    def get_object_tagging(self, Bucket: str, Key: str, VersionId: str) -> dict[str, Any]:
        version = self.versions[(Key, VersionId)]
        tags = {"patient_mrn": version.mrn, "folder_name": version.folder} if version.tagged else {}
        return {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}

    def get_object(self, Bucket: str, Key: str, VersionId: str) -> dict[str, Any]:
        body = self.contents[self.versions[(Key, VersionId)].content]
        return {"Body": io.BytesIO(body), "ContentLength": len(body), "Metadata": {}, "VersionId": VersionId}


@dataclasses.dataclass
class StoredDocument:
    """A document Cobalt stored: where it came from, and what the EMR does with it."""

    document_id: str
    object_id: str
    content: int
    mrn: str
    folder: str
    uploaded: bool  # the EMR files it (document.uploaded) or refuses it (document.upload_failed)
    answered: bool  # the uploader received its document id
    processed: bool = False  # the EMR robot is done: its outcome event exists


class ScriptedCobalt:
    """Cobalt's upload, event log and webhooks, answering as the test scripts each POST (see the module docstring)."""

    timeout = (1.0, 2.0)

    def __init__(self) -> None:
        self.documents: dict[str, StoredDocument] = {}
        self.refusals: dict[str, int] = {}  # object id -> POSTs Cobalt refused outright (no document)
        self.log: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []  # outcome events not yet delivered
        self._counter = 0
        self._lock = threading.Lock()

    def _next(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def upload_document(
        self,
        fields: UploadFields,
        filename: str,
        content_type: str,
        content: bytes,
        timeout: float | None = None,
        account: str | None = None,
    ) -> CobaltAnswer:
        invocation = current()
        assert invocation is not None, "only an uploader invocation uploads"
        mode = invocation.gate("post")
        if mode == "crash":
            raise Crash
        version = invocation.message.version
        if mode.startswith(("accept", "stored")):
            document_id = f"{7000000000000000 + self._next()}"
            self.documents[document_id] = StoredDocument(
                document_id,
                version.object_id,
                version.content,
                fields.patient_mrn,
                fields.folder_name,
                uploaded=mode.endswith("uploaded"),
                answered=mode.startswith("accept"),
            )
            if mode.startswith("accept"):
                body = {"success": True, "message": "Document uploaded successfully", "document_id": document_id}
                return classify_response(200, body, {})
            if mode.startswith("stored_then_crash"):
                raise Crash
            return classify_exception(_read_timeout())  # stored, and the answer never came
        if mode == "refuse":
            self.refusals[version.object_id] = self.refusals.get(version.object_id, 0) + 1
            return classify_response(400, {"success": False, "message": "Staff member not found"}, {})
        if mode == "server_error":  # 500: nothing stored, and DocDrop cannot know that
            return classify_response(500, {"success": False, "message": "Internal error"}, {})
        if mode == "unavailable":
            return classify_response(503, {}, {})
        if mode == "login_required":
            body = {"success": False, "error": "login_required", "message": "Account link expired."}
            return classify_response(403, body, {})
        raise AssertionError(f"no such Cobalt answer: {mode}")

    def process(self, document_id: str, now: datetime) -> dict[str, Any]:
        """The EMR robot is done with a document: its outcome event is logged, and due for delivery."""
        document = self.documents[document_id]
        document.processed = True
        data: dict[str, Any] = {
            "document_id": document_id,
            "patient_mrn": document.mrn,
            "folder_name": document.folder,
        }
        if not document.uploaded:
            data["failure_reason"] = "Patient not found. Please check the patient MRN and try again."
        event = {
            "id": f"evt-{self._next()}",
            "object": "event",
            "created": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "type": "document.uploaded" if document.uploaded else "document.upload_failed",
            "access_token_reference_id": "default",
            "data": data,
        }
        self.log.append(event)
        self.deliveries.append(event)
        return event

    def webhook_events(
        self,
        *,
        event_type: str | None,
        start_date: date,
        page: int,
        page_size: int = 100,
        delivery_status: str | None = None,
        account: str | None = None,
    ) -> EventLogPage:
        items = [
            e
            for e in self.log
            if (event_type is None or e["type"] == event_type) and e["created"][:10] >= start_date.isoformat()
        ]
        pages = max(1, -(-len(items) // page_size))
        chosen = items[(page - 1) * page_size : page * page_size]
        found = [e for e in (envelope_from_log_item(i) for i in chosen) if e is not None]
        return EventLogPage(found, page, pages if items else 0)

    def document_sha256(self, document_id: str, max_bytes: int = 0) -> str | None:
        return None  # GET /v1/documents/{id} is not documented for uploads: no evidence either way

    # ----- truth, for the invariants --------------------------------------------------------------------------------
    def stored_for(self, object_id: str) -> list[StoredDocument]:
        return [d for d in self.documents.values() if d.object_id == object_id]


def _read_timeout() -> BaseException:
    import requests

    return requests.exceptions.ReadTimeout("read timed out")


def signed_delivery(event: dict[str, Any], attempt: int) -> tuple[bytes, dict[str, str]]:
    """A webhook delivery as Cobalt sends it: compact JSON signed with the webhook secret."""
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "cobalt-verification": signature,
        "webhook-id": str(event["id"]),
        "webhook-timestamp": str(event["created"]),
        "webhook-attempt": str(attempt),
        "content-type": "application/json",
    }
    return body, headers


def utc_now() -> datetime:
    return datetime.now(UTC)
