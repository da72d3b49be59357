"""Open items of a ledger written before the `by_open` index: indexed once (a Scan, page by page across passes), then
never looked for again."""

from __future__ import annotations

from docdrop.reconciler.sweep import OPEN_INDEX_STATE, Pass, Sweep


class IndexUpgrade(Sweep):
    """The one-off indexing of an older ledger's open items, resumed where the last pass stopped."""

    def run(self, p: Pass) -> None:
        progress = p.state.get(OPEN_INDEX_STATE)
        if progress == "done":
            return
        start = dict(progress) if isinstance(progress, dict) else None
        while not p.out_of_time():
            indexed, start = self._ledger.index_open_items(start)
            p.report.open_items_indexed += indexed
            p.state[OPEN_INDEX_STATE] = start or "done"
            if start is None:
                return
