"""What the ledger's DynamoDB stream does for a test that records an outcome without one running: the outcome joiner's
call on the Cobalt document's new image (joined to its object, or listed as unjoined)."""

from __future__ import annotations

import logging

from docdrop.ledger import DocumentLedger
from docdrop.outcomes import OutcomeJoiner


class NoMetrics:
    def add_metric(self, name: str, unit: str, value: float) -> None:
        pass


def as_the_stream_does(ledger: DocumentLedger, document_id: str, metrics: object | None = None) -> None:
    joiner = OutcomeJoiner(ledger, metrics or NoMetrics(), logging.getLogger("test.outcomes"))  # type: ignore[arg-type]
    joiner.join(ledger.get_document(document_id) or {}, mark=f"stream:{document_id}")
