"""NEEDS_REVIEW resolved by evidence, only where it is definitive (promise 1: a wrong link is worse than none).

An ambiguous attempt (the request left, no answer came back) keeps a keyed fingerprint of its patient and folder, the
file's sha256 and its window (sent, gave up). A Cobalt outcome for a document DocDrop does not know carries the same
fingerprint, computed by the webhook from its `data`. A review and a document are linked only when:
- their fingerprints are equal;
- the document's outcome was created inside the attempt's window, widened by MARGIN_BEFORE and MARGIN_AFTER;
- each is the other's only candidate;
- and, where Cobalt answers GET /v1/documents/{id}, the sha256 of its bytes is the attempt's (a mismatch vetoes).
Everything else is left to a person (`docdrop review`), with the candidates at hand. Nothing is ever sent again here.

The other direction, "not filed, by silence" (`silence_of`): Cobalt sends a `document.*` event for every document
it accepted, and its event log keeps them. A review whose attempt window, plus a long horizon (`SilentAfterHours`),
holds no such event of its patient and folder, once the whole log over that span has been read, was never accepted.
It is silent only when nothing else could be its document or claims its evidence; anything else is a person's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from docdrop.ledger import (
    RESEND_APPROVED,
    RESENT_BY_SILENCE,
    RIVAL_LIFETIME,
    SILENCE,
    DocumentLedger,
    ObjectRef,
    Status,
    parse_moment,
)

# The clock of a document's outcome event may run a little ahead of ours: a minute of slack before the attempt.
MARGIN_BEFORE = timedelta(minutes=1)
# Cobalt's EMR robot files a document in tens of seconds to minutes (its docs say wait up to 3): 10 minutes after.
MARGIN_AFTER = timedelta(minutes=10)
# Reviews older than this are a person's: no new candidate can fall inside their window any more.
REVIEW_HORIZON = timedelta(days=7)
# A review dismissed within this long stays a rival for the documents the EMR files since (its attempt may be theirs).
DISMISSED_RIVALS = RIVAL_LIFETIME


@dataclasses.dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def of(cls, review: Mapping[str, Any]) -> Window | None:
        sent, ended = parse_moment(review.get("attempt_sent_at")), parse_moment(review.get("attempt_ended_at"))
        if sent is None or ended is None:
            return None
        return cls(sent - MARGIN_BEFORE, ended + MARGIN_AFTER)

    def holds(self, document: Mapping[str, Any]) -> bool:
        created = parse_moment(document.get("outcome_created"))
        return created is not None and self.start <= created <= self.end


@dataclasses.dataclass(frozen=True)
class Candidates:
    """A review (a NEEDS_REVIEW object item) and the unknown Cobalt documents that fit its evidence."""

    review: Mapping[str, Any]
    documents: tuple[Mapping[str, Any], ...]
    unique: bool  # one document, which fits no other review
    why_not: str | None  # for a person, when not unique


def candidates_for(
    reviews: Iterable[Mapping[str, Any]],
    documents: Iterable[Mapping[str, Any]],
    in_flight: Iterable[Mapping[str, Any]] = (),
    rivals: Iterable[Mapping[str, Any]] | None = None,
) -> list[Candidates]:
    """Each review with evidence, and its candidates; `unique` only when each side has exactly one.

    A document's rivals are every other review in `rivals` (the reconciler's: every open one however old, and those
    dismissed lately; by default `reviews`) whose attempt could have sent it: the same patient and folder, sent before
    the document's outcome was created. Not only those whose window holds it: the EMR may file a document hours or
    days after its upload, and then an earlier lost attempt is as likely its sender as the one whose window it falls in.

    `in_flight` (object items RECEIVED or SUBMITTED) are rivals too: a document one of them names is no candidate, and
    an upload of the same patient and folder still in flight (its answer not yet recorded) may be the document's
    sender, so no review is matched to it automatically while it is.
    """
    reviews = list(reviews)
    others = reviews if rivals is None else list(rivals)
    in_flight = list(in_flight)
    named = {str(i["document_id"]) for i in in_flight if i.get("document_id")}
    sending = {str(i.get("evidence_fingerprint")) for i in in_flight if not i.get("document_id")}
    usable = [(r, w) for r in reviews if r.get("evidence_fingerprint") and (w := Window.of(r)) is not None]
    unknown = [
        d
        for d in documents
        if d.get("evidence_fingerprint") and not d.get("object_id") and str(d.get("document_id")) not in named
    ]

    def fits(review: Mapping[str, Any], window: Window, document: Mapping[str, Any]) -> bool:
        return document["evidence_fingerprint"] == review["evidence_fingerprint"] and window.holds(document)

    found: list[Candidates] = []
    for review, window in usable:
        matches = tuple(d for d in unknown if fits(review, window, d))
        if not matches:
            found.append(Candidates(review, (), False, "no document of Cobalt's fits its patient, folder and time"))
            continue
        if len(matches) > 1:
            found.append(Candidates(review, matches, False, f"{len(matches)} documents fit: a person must choose"))
            continue
        rivaling = [r for r in others if not _same(r, review) and could_have_sent(r, matches[0])]
        why = f"the document may be {len(rivaling)} other attempt(s)'s too" if rivaling else None
        if not rivaling and review["evidence_fingerprint"] in sending:
            why = "an upload of the same patient and folder is still in flight: it may be that upload's document"
        found.append(Candidates(review, matches, why is None, why))
    return found


def could_have_sent(review: Mapping[str, Any], document: Mapping[str, Any]) -> bool:
    """The review's attempt, for the same patient and folder, left before the document's outcome was created (with the
    clocks' slack): the EMR may have filed it since, however long that took."""
    if review.get("evidence_fingerprint") != document.get("evidence_fingerprint"):
        return False
    sent, created = parse_moment(review.get("attempt_sent_at")), parse_moment(document.get("outcome_created"))
    return sent is None or created is None or sent - MARGIN_BEFORE <= created


def _same(one: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    return one is other or one.get("object_id") == other.get("object_id")


@dataclasses.dataclass(frozen=True)
class LoggedDocument:
    """A `document.*` event read from Cobalt's event log, with what the ledger knows of its document."""

    document_id: str
    fingerprint: str | None  # None: the event named no patient and folder
    created: datetime | None
    linked_to: str | None  # the object the ledger links the document to (DocDrop sent it), if any


def silent_span(review: Mapping[str, Any], silent_after: timedelta) -> tuple[datetime, datetime] | None:
    """The span Cobalt's log must be silent over for this review: from its attempt's start (with the clocks' slack) to
    `silent_after` past its end (the horizon is far longer than the match's MARGIN_AFTER, which it makes moot)."""
    window = Window.of(review)
    ended = parse_moment(review.get("attempt_ended_at"))
    if window is None or ended is None or not review.get("evidence_fingerprint"):
        return None
    # From the version's first claim, not only this attempt's: an earlier attempt of it may be what Cobalt holds.
    first = parse_moment(review.get("created_at"))
    start = min(window.start, first - MARGIN_BEFORE) if first is not None else window.start
    return start, ended + silent_after


def evidence_rivals(
    review: Mapping[str, Any], others: Iterable[Mapping[str, Any]], in_flight: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Other objects that claim the same evidence: reviews (open, dismissed, or resent attempts) of the same patient and
    folder whose windows overlap this one's, and uploads of them still in flight with no document id yet."""
    window = Window.of(review)
    fingerprint = review.get("evidence_fingerprint")
    if window is None or not fingerprint:
        return []
    rivals = []
    for other in others:
        theirs = Window.of(other)
        if _same(other, review) or other.get("evidence_fingerprint") != fingerprint or theirs is None:
            continue
        if theirs.start <= window.end and window.start <= theirs.end:
            rivals.append(str(other.get("object_id")))
    rivals += [
        str(i.get("object_id"))
        for i in in_flight
        if not _same(i, review) and i.get("evidence_fingerprint") == fingerprint and not i.get("document_id")
    ]
    return rivals


def silence_of(
    review: Mapping[str, Any],
    silent_after: timedelta,
    logged: Iterable[LoggedDocument],
    unjoined: Iterable[Mapping[str, Any]],
    rivals: list[str],
    kept: Iterable[Mapping[str, Any]] = (),
) -> str | None:
    """None when the review's attempt was not filed, by silence: the whole log from its window on was read (`logged`:
    every `document.*` event of it, read once the horizon had passed), and no event of its patient and folder since the
    window opened names a document the ledger gives to no other object, no event without patient and folder falls there
    either, no unjoined or foreign document of the ledger fits, no other object claims the same evidence (`rivals`),
    and no submission Cobalt accepted for this very version waits to be recorded (`kept`). Otherwise why not, for a
    person. Events after the horizon count too: the EMR may have filed the attempt's document
    late, and silence is only ever the absence of everything that could be it."""
    span = silent_span(review, silent_after)
    if span is None:
        return "no evidence was kept for this attempt"
    start = span[0]
    fingerprint = review["evidence_fingerprint"]
    mine = next((d for d in kept if str(d.get("object_id")) == str(review.get("object_id"))), None)
    if mine is not None:  # a kept submission (`unrecorded_submissions`): Cobalt accepted this very version
        return f"Cobalt accepted this version as document {mine.get('document_id')}; its record is pending"
    if rivals:
        return f"{len(rivals)} other object(s) claim the same patient, folder and time: a person decides"
    for document in logged:
        if document.created is not None and document.created < start:
            continue
        if document.linked_to is not None and document.linked_to != review.get("object_id"):
            continue  # another of DocDrop's uploads: that upload's document
        if document.fingerprint is None:
            return f"Cobalt logged document {document.document_id} without its patient and folder in the span"
        if document.fingerprint == fingerprint:
            return f"Cobalt logged document {document.document_id} of this patient and folder in the span"
    for held in unjoined:
        created = parse_moment(held.get("outcome_created"))
        if held.get("evidence_fingerprint") == fingerprint and (created is None or start <= created):
            return f"the ledger holds document {held.get('document_id')} of this patient and folder, unclaimed"
    return None


def evidence_state(
    candidates: Candidates | None, review: Mapping[str, Any], silent_after: timedelta, now: datetime
) -> tuple[str, str]:
    """A review's evidence, as `docdrop review` shows it: matched; several candidates; waiting for silence (and how
    long); silent; or a person's (no evidence, or what the silence check found instead)."""
    if candidates is not None and candidates.documents:
        if candidates.unique:
            return "matched", f"document {candidates.documents[0].get('document_id')}: the reconciler links it"
        if len(candidates.documents) > 1:
            return "several candidates", candidates.why_not or "a person must choose"
        return "candidate", candidates.why_not or "a person must check it"
    span = silent_span(review, silent_after)
    if span is None:
        return "a person's", "no evidence was kept for this attempt"
    check = review.get(SILENCE)
    if isinstance(check, Mapping):
        if check.get("verdict") == "silent":
            return (
                "silent",
                f"no document in Cobalt's log ({check.get('pages')} page(s) read {check.get('checked_at')})",
            )
        return "a person's", str(check.get("why") or "the silence check found something")
    left = span[1] - now
    if left > timedelta(0):
        return "waiting for silence", f"{_span_text(left)} left"
    return "waiting for silence", "due: the reconciler's next complete read of Cobalt's log decides"


def _span_text(span: timedelta) -> str:
    seconds = span.total_seconds()
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def is_silent(review: Mapping[str, Any]) -> bool:
    """A NEEDS_REVIEW the reconciler found not filed, by silence (its check is kept on it)."""
    check = review.get(SILENCE)
    return (
        review.get("status") == Status.NEEDS_REVIEW.value
        and isinstance(check, Mapping)
        and check.get("verdict") == "silent"
    )


def resend_silent_reviews(
    ledger: DocumentLedger,
    decided_by: str,
    send: Callable[[ObjectRef, int], None],
    *,
    reviews: Iterable[Mapping[str, Any]] | None = None,
    by_silence: bool = False,
    dry_run: bool = False,
) -> list[tuple[str, str]]:
    """Send every silent review once, each claimed as any upload is (`send` puts its S3-shaped event on the queue):
    `docdrop resolve --silent --resend`, and the reconciler's own with ResendSilentReviews (`by_silence`: never one it
    resent by silence before). A review the ledger has learnt something of since its check (a candidate document, a
    submission Cobalt accepted) is skipped. Returns (object id, what happened) for each."""
    chosen = [
        r
        for r in (reviews if reviews is not None else ledger.open_items(Status.NEEDS_REVIEW))
        if is_silent(r) and not r.get(RESEND_APPROVED) and not (by_silence and r.get(RESENT_BY_SILENCE))
    ]
    if not chosen:
        return []
    documents = list(ledger.unjoined_documents(before=datetime.now(UTC)))
    fits = {str(c.review["object_id"]): c for c in candidates_for(chosen, documents, ledger.in_flight_items())}
    kept = {str(d.get("object_id")) for d in ledger.unrecorded_submissions()}
    done: list[tuple[str, str]] = []
    for review in chosen:
        object_id = str(review["object_id"])
        found = fits.get(object_id)
        if object_id in kept or (found is not None and found.documents):
            done.append((object_id, "skipped: the ledger has a document for it since the check"))
            continue
        if dry_run:
            done.append((object_id, "would send"))
            continue
        ref = ledger.item_ref(review)
        reason = (
            "Not filed, by silence: resent once by the reconciler (ResendSilentReviews)"
            if by_silence
            else f"Not filed, by silence: resend approved by {decided_by} (docdrop resolve --silent --resend)"
        )
        read_at = str(review["status_at"])
        if not ledger.approve_resend(ref, reason, decided_by, Status.NEEDS_REVIEW, read_at, by_silence=by_silence):
            done.append((object_id, "not sent: someone decided first"))
            continue
        send(ref, int(review.get("size") or 0))
        done.append((object_id, "sent"))
    return done
