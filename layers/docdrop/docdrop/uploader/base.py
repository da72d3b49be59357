"""The state every part of the uploader shares (`DocumentUploader.__init__` sets it), and the two steps they all take:
the time one attempt needs, and recording a claim's state."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from docdrop.accounts import CobaltAccounts
from docdrop.breaker import BreakerSettings, CobaltBreaker
from docdrop.cobalt import CobaltClient
from docdrop.ledger import DocumentLedger, LedgerError, ObjectRef, Status
from docdrop.retry_schedule import RetrySchedule
from docdrop.uploader.results import RECORD_MARGIN_SECONDS, RetryLater


class UploaderBase:
    """What `DocumentUploader`'s parts (reading, the duplicate check, sending) read from the one uploader."""

    _ledger: DocumentLedger
    _s3: Any
    _cobalt: CobaltClient
    logger: logging.Logger | Any
    _prefix: str
    _max_attempts: int
    _sleep: Callable[[float], None]
    _fingerprint_key: Callable[[], bytes] | None
    _duplicate_window: timedelta
    _retry_schedule: RetrySchedule
    _max_receive_count: int
    _breaker_settings: BreakerSettings | None
    _breakers: dict[str, CobaltBreaker]
    _breakers_lock: threading.Lock
    _accounts: Callable[[], CobaltAccounts]
    _account_prefixes: dict[str, str]
    _links: dict[str, tuple[float, bool]]

    def _attempt_floor(self) -> float:
        """Seconds one attempt needs at the least: connecting, 2 s for Cobalt to answer, recording what it said."""
        return self._cobalt.timeout[0] + 2 + RECORD_MARGIN_SECONDS

    def _record(self, ref: ObjectRef, token: str, status: Status, reason: str, **attrs: Any) -> None:
        try:
            written = self._ledger.record_claimed_state(ref, token, status, reason, **attrs)
        except (LedgerError, ClientError) as exc:
            # The claim stays RECEIVED; when its lease runs out the redelivered message marks it for review.
            raise RetryLater(f"object {ref.object_id}: could not record {status.value}") from exc
        if not written:
            self.logger.error("claim token no longer matches", extra={"object_id": ref.object_id})
