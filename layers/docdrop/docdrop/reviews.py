"""NEEDS_REVIEW resolved by evidence, only where it is definitive (promise 1: a wrong link is worse than none).

An ambiguous attempt (the request left, no answer came back) keeps a keyed fingerprint of its patient and folder, the
file's sha256 and its window (sent, gave up). A Cobalt outcome for a document DocDrop does not know carries the same
fingerprint, computed by the webhook from its `data`. A review and a document are linked only when:
- their fingerprints are equal;
- the document's outcome was created inside the attempt's window, widened by MARGIN_BEFORE and MARGIN_AFTER;
- each is the other's only candidate;
- and, where Cobalt answers GET /v1/documents/{id}, the sha256 of its bytes is the attempt's (a mismatch vetoes).
Everything else is left to a person (`docdrop review`), with the candidates at hand. Nothing is ever sent again here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from docdrop.ledger import RIVAL_LIFETIME, parse_moment

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
