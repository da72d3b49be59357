"""The sparse `by_open` and `by_unjoined_outcome` indexes and the listings read from them: what waits (and since when),
reviews' rivals, unjoined outcomes; and the one-off pass that indexes items written before `by_open` existed. A sweep's
read grows with what is open, never with history; a settled status is read by a Scan (an operator's listing)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from docdrop.ledger.expression import Expression, item_values, plain
from docdrop.ledger.model import (
    ATTEMPT_PREFIX,
    DISMISSED_REVIEW,
    HISTORY_PREFIX,
    IN_FLIGHT,
    OPEN_STATE,
    UNJOINED,
    DocumentView,
    Status,
    items_within,
    object_view,
)
from docdrop.ledger.table import LedgerTable


class OpenIndex(LedgerTable):
    """Reads of open object items and unjoined Cobalt documents, by index; counts; the indexing pass."""

    def list_by_status(
        self, status: Status, older_than: timedelta | None = None, limit: int = 100, newest_first: bool = False
    ) -> list[DocumentView]:
        """Object versions in a status, oldest first by default, without their history (`history` reads it).

        An object's own item carries its status once its outcome is joined, so no other item is read per row.
        """
        before = datetime.now(UTC) - older_than if older_than is not None else None
        items = self.open_items(status, before=before, limit=limit, newest_first=newest_first)
        return [object_view(item) for item in items]

    def open_items(
        self,
        status: Status,
        before: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        since: datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Object items in `status` whose `status_at` is at or after `since` and at or before `before`, oldest first.

        A state of the `by_open` index is read from it, so the cost grows with what is open, never with history. A
        settled state (UPLOADED, FAILED, REJECTED, DUPLICATE, DISMISSED) is in no index: it is read by a Scan of the
        table, whose cost grows with the table (an operator's listing, never a function's sweep).
        """
        state = OPEN_STATE.get(status)
        if state is not None and state != IN_FLIGHT:  # an entry's `open_at` is its `status_at`: the index orders rows
            keys = self._open_keys(state, before, since, newest_first, limit)
            return iter([i for i in self._batch_items(keys) if i.get("status") == status.value])
        # RECEIVED and SUBMITTED share one entry, opened at the claim: read it whole. A settled state is scanned for.
        found = self.in_flight_items() if state == IN_FLIGHT else self._scanned(status)
        items = items_within(found, status, before, since)
        items = items[::-1] if newest_first else items
        return iter(items[:limit] if limit is not None else items)

    def dismissed_reviews(self, since: datetime) -> list[dict[str, Any]]:
        """Reviews a person dismissed, and reviewed attempts a person sent again, since `since`: settled, but rivals for
        a document their attempt may have sent."""
        keys = self._open_keys(DISMISSED_REVIEW, None, since, False, None)
        return [
            i
            for i in self._batch_items(keys)
            if i.get("status") == Status.DISMISSED.value or str(i.get("sk", "")).startswith(ATTEMPT_PREFIX)
        ]

    def in_flight_items(self) -> list[dict[str, Any]]:
        """Every object item RECEIVED or SUBMITTED: the in-flight entry of `by_open`, read whole. A caller that needs
        both statuses reads it once and picks with `items_within`."""
        return self._batch_items(self._open_keys(IN_FLIGHT, None, None, False, None))

    def _open_keys(
        self, state: str, before: datetime | None, since: datetime | None, newest_first: bool, limit: int | None
    ) -> list[dict[str, Any]]:
        """The table keys under one `open_state` of the `by_open` index (KEYS_ONLY), in `open_at` order."""
        entries = self._index_items("by_open", "open_state", "open_at", state, before, limit, newest_first, since)
        return [{"pk": {"S": str(i["pk"])}, "sk": {"S": str(i["sk"])}} for i in entries]

    def _scanned(self, status: Status) -> Iterator[dict[str, Any]]:
        """Object items in a settled `status`, by a Scan of the whole table (see `open_items`)."""
        e = Expression()
        return self._scan(e, f"{e.n('sk')} = {e.v('OBJ')} AND {e.n('status')} = {e.v(status.value)}")

    def status_counts(self) -> dict[str, int]:
        """How many object items are in each status, by one Scan of the table (benchmarks and tests; not a sweep)."""
        e = Expression()
        found = self._scan(e, f"{e.n('sk')} = {e.v('OBJ')}", projection=e.n("status"))
        return dict(Counter(str(item.get("status")) for item in found))

    def count_open(self, statuses: Iterable[Status]) -> dict[Status, tuple[int, str | None]]:
        """How many object items are in each open status and the `status_at` of the oldest: cost grows with what is
        open only (a settled status is counted by `status_counts`). RECEIVED and SUBMITTED share the in-flight entry,
        which is read once for both."""
        counts: dict[Status, tuple[int, str | None]] = {}
        in_flight: list[dict[str, Any]] | None = None
        for status in statuses:
            state = OPEN_STATE.get(status)
            if state is None:
                raise ValueError(f"{status} is not an open state: count it with status_counts()")
            if state == IN_FLIGHT:
                if in_flight is None:
                    in_flight = self.in_flight_items()
                times = sorted(str(i.get("status_at") or "") for i in in_flight if i.get("status") == status.value)
                counts[status] = (len(times), (times[0] or None) if times else None)
                continue
            # The oldest entry's `open_at` is its item's `status_at`: the keys-only index says it, no item is read.
            oldest = next(self._index_items("by_open", "open_state", "open_at", state, None, 1, False, None), None)
            if oldest is None:
                counts[status] = (0, None)
                continue
            query = {**self._index_query("by_open", "open_state", "open_at", state, None, True), "Select": "COUNT"}
            count = sum(int(page.get("Count", 0)) for page in self._pages("query", query))
            counts[status] = (count, str(oldest.get("open_at") or "") or None)
        return counts

    def unjoined_outcomes(self, outcome: Status, before: datetime) -> Iterator[dict[str, Any]]:
        """Cobalt documents with an `outcome` not yet joined to an object, recorded at or before `before`."""
        return self._index_items("by_unjoined_outcome", UNJOINED, "outcome_at", outcome.value, before, None, False)

    def unjoined_documents(self, before: datetime) -> Iterator[dict[str, Any]]:
        """Cobalt documents with an outcome, UPLOADED or FAILED, not yet joined to an object (`unjoined_outcomes`)."""
        for outcome in (Status.UPLOADED, Status.FAILED):
            yield from self.unjoined_outcomes(outcome, before)

    def index_open_items(self, start: Mapping[str, str] | None, limit: int = 500) -> tuple[int, dict[str, str] | None]:
        """Put open object items written before the `by_open` index existed into it: one Scan page (up to `limit` items
        read) from `start`. Returns how many were indexed and where to go on (None: the table is done). Each item only
        as it was read, so a transition meanwhile is never overwritten."""
        e = Expression()
        states = ", ".join(e.v(s.value) for s in OPEN_STATE)
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Limit": limit,
            "FilterExpression": f"{e.n('sk')} = {e.v('OBJ')} AND attribute_not_exists({e.n('open_state')})"
            f" AND {e.n('status')} IN ({states})",
            "ExpressionAttributeNames": e.names,
            "ExpressionAttributeValues": item_values(e.values),
        }
        if start:
            kwargs["ExclusiveStartKey"] = {k: {"S": v} for k, v in start.items()}
        page = self._call("scan", **kwargs)
        indexed = 0
        for item in filter(None, map(plain, page.get("Items", []))):
            u = Expression()
            sets = u.assign({"open_state": OPEN_STATE[Status(item["status"])], "open_at": str(item["status_at"])})
            condition = (
                f"{u.n('status')} = {u.v(item['status'])} AND {u.n('status_at')} = {u.v(item['status_at'])}"
                f" AND attribute_not_exists({u.n('open_state')})"
            )
            indexed += self._conditional_update(
                {"pk": {"S": str(item["pk"])}, "sk": {"S": "OBJ"}}, u, "SET " + ", ".join(sets), condition
            )
        last = page.get("LastEvaluatedKey")
        return indexed, ({k: str(v["S"]) for k, v in last.items()} if last else None)

    def ever_in(self, status: Status) -> set[str]:
        """The object ids with a history item of `status` (a transition off the hot path), by one Scan of the table:
        for benchmarks and audits, never a function's sweep."""
        e = Expression()
        condition = f"begins_with({e.n('sk')}, {e.v(HISTORY_PREFIX)}) AND {e.n('status')} = {e.v(status.value)}"
        return {str(item["pk"]).removeprefix("OBJ#") for item in self._scan(e, condition, projection=e.n("pk"))}
