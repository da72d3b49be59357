"""Cobalt's event log, read for a pass: the outcomes of open submissions whose webhook was lost (with a cursor per
log, kept in the pass's state), candidates for reviews, and the silence check's whole read."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from docdrop.accounts import account_of
from docdrop.cobalt import EventLogPage, EventLogUnavailable
from docdrop.cobalt_events import outcome_event_from
from docdrop.deadline import Deadline
from docdrop.evidence import outcome_fingerprint
from docdrop.ledger import OUTCOMES, OutcomeEvent, parse_moment
from docdrop.reconciler.sweep import RESERVE_SECONDS, PassReport, Sweep, linked, parse_time
from docdrop.reviews import LoggedDocument


class EventLog(Sweep):
    """Reads Cobalt's event log for the sweeps that need it (submitted, reviews, silence); not a sweep of its own."""

    def search(
        self,
        wanted: dict[str, dict[str, Any]],
        known: set[str],
        state: dict[str, Any],
        deadline: Deadline,
        report: PassReport,
        from_first_page: bool = False,
        reviews: Mapping[str, datetime] | None = None,
    ) -> bool:
        """Record the outcomes Cobalt's event log holds for open submissions. True when the whole log was read.

        With `reviews` (keyed patient/folder fingerprints of open reviews, and the earliest attempt), it records instead
        the outcomes of unknown documents with those fingerprints: candidates whose webhook was lost too. Such a search
        keeps a cursor of its own.

        Pages are read oldest first from the day before the oldest wanted submission, and the page reached is kept
        in `state`: the next pass starts one page earlier (pages fill up at the end), not at the beginning. Events
        are matched against every open submission, not only the overdue ones, so a page passed once is not needed
        again for a document that becomes overdue later.
        """
        if reviews:
            oldest, cursor_name = min(reviews.values()), "review_log"
        else:
            oldest, cursor_name = min(parse_time(str(item["status_at"])) for item in wanted.values()), "event_log"
        start: date = (oldest - timedelta(days=1)).date()  # Cobalt's days may not be UTC days
        cursor = state.get(cursor_name)
        if not isinstance(cursor, dict) or cursor.get("start_date") != start.isoformat():
            cursor = {"start_date": start.isoformat(), "pages": {}}
        state[cursor_name] = cursor
        found: set[str] = set()
        for account, log_cursor in self._event_logs(wanted, reviews, cursor_name, cursor, state):
            if not self._read_event_log(
                report, deadline, wanted, reviews, known, start, log_cursor, account, found, from_first_page
            ):
                return False
            if wanted and wanted.keys() <= found:
                break
        return True

    def _event_logs(
        self,
        wanted: dict[str, dict[str, Any]],
        reviews: Mapping[str, datetime] | None,
        cursor_name: str,
        cursor: dict[str, Any],
        state: dict[str, Any],
    ) -> list[tuple[str | None, dict[str, Any]]]:
        """Whose event log to read: each account with open submissions, with a cursor each (Cobalt's docs do not say
        whether the log is per access token or per client: read per account, and the event ids de-duplicate)."""
        accounts = self._accounts()
        names = sorted({account_of(i) for i in wanted.values() if accounts.get(account_of(i))})
        if reviews or len(accounts.accounts) <= 1 or not names:
            return [(None, cursor)]
        logs: list[tuple[str | None, dict[str, Any]]] = []
        for name in names:
            own = state.get(f"{cursor_name}#{name}")
            if not isinstance(own, dict) or own.get("start_date") != cursor["start_date"]:
                own = {"start_date": cursor["start_date"], "pages": {}}
            state[f"{cursor_name}#{name}"] = own
            logs.append((name, own))
        return logs

    def _read_event_log(
        self,
        report: PassReport,
        deadline: Deadline,
        wanted: dict[str, dict[str, Any]],
        reviews: Mapping[str, datetime] | None,
        known: set[str],
        start: date,
        cursor: dict[str, Any],
        account: str | None,
        found: set[str],
        from_first_page: bool,
    ) -> bool:
        """One account's log (None: the first account's), oldest first from `start`, resuming at `cursor`."""
        for event_type in OUTCOMES:
            reached = int(cursor["pages"].get(event_type, 1))
            page = 1 if from_first_page else max(1, reached - 1)
            while True:
                result = self.page(report, deadline, event_type, start, page, account)
                if result is None:
                    return False
                for envelope in result.events:
                    event = outcome_event_from(envelope, source="event_log")
                    if event is not None and reviews:
                        key = self._fingerprint_key
                        fingerprint = outcome_fingerprint(key(), envelope.get("data")) if key else None
                        if fingerprint is not None and fingerprint in reviews:
                            self.record_candidate(event, fingerprint)
                        continue
                    if event is None or event.document_id not in known:
                        continue
                    self._ledger.record_outcome(event)  # False: the webhook (or an earlier pass) had it already
                    found.add(event.document_id)
                cursor["pages"][event_type] = max(page, reached)
                if page >= result.total_pages:
                    break
                page += 1
            if wanted and wanted.keys() <= found:
                break
        return True

    def page(
        self, report: PassReport, deadline: Deadline, event_type: str, start: date, page: int, account: str | None
    ) -> EventLogPage | None:
        """One page of Cobalt's event log, counted; None when the pass's time is short or the log cannot be read."""
        if deadline.remaining() < RESERVE_SECONDS + self._cobalt.timeout[0] + self._cobalt.timeout[1]:
            report.complete = False
            return None
        try:
            result = self._cobalt.webhook_events(
                event_type=event_type, start_date=start, page=page, page_size=self._page_size, account=account
            )
        except EventLogUnavailable as exc:
            self.logger.warning("Cobalt's event log could not be read", extra={"error": str(exc)})
            report.event_log_unavailable = True
            return None
        report.event_log_pages += 1
        return result

    def record_candidate(self, event: OutcomeEvent, fingerprint: str) -> None:
        """A logged outcome of a review's patient and folder, recorded as the webhook would, and listed as unjoined now
        (as the stream would) so this pass's match can find it."""
        self._ledger.record_outcome(dataclasses.replace(event, evidence_fingerprint=fingerprint))
        self._joiner.join(self._ledger.get_document(event.document_id) or {}, mark="reconciler:event-log")

    def read_whole(
        self, report: PassReport, deadline: Deadline, due: list[dict[str, Any]], start: date
    ) -> tuple[list[LoggedDocument], int] | None:
        """Every `document.*` event in the log of each account the reviews went to, from `start`, every page, and what
        the ledger knows of their documents. Events of the reviews' patients and folders are recorded as the webhook's
        would be (so a lost webhook's document becomes a candidate). None when the read could not be completed."""
        accounts = self._accounts()
        names: list[str | None] = [None]
        if len(accounts.accounts) > 1:
            names = [*sorted({account_of(r) for r in due if accounts.get(account_of(r))})] or [None]
        fingerprints = {str(r["evidence_fingerprint"]) for r in due}
        key = self._fingerprint_key
        assert key is not None
        events: dict[str, tuple[str | None, datetime | None]] = {}
        pages = 0
        for account in names:
            for event_type in OUTCOMES:
                page = 1
                while True:
                    result = self.page(report, deadline, event_type, start, page, account)
                    if result is None:
                        return None
                    pages += 1
                    for envelope in result.events:
                        event = outcome_event_from(envelope, source="event_log")
                        if event is None:
                            continue
                        fingerprint = outcome_fingerprint(key(), envelope.get("data"))
                        events[event.document_id] = (fingerprint, parse_moment(event.created))
                        if fingerprint in fingerprints:  # a lost webhook's document: a candidate from now on
                            self.record_candidate(event, fingerprint)
                    if page >= result.total_pages:
                        break
                    page += 1
        known = self._ledger.get_documents(list(events)) if events else {}
        logged = [
            LoggedDocument(document_id, fingerprint, created, linked(known.get(document_id)))
            for document_id, (fingerprint, created) in events.items()
        ]
        return logged, pages
