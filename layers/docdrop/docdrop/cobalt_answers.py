"""What each of Cobalt's answers means (promise 6): the classifier of the Cobalt client's (`docdrop.cobalt`) answers.

Cobalt has no idempotency key and warns against retrying anything not confirmed failed, so every answer is sorted into:
- ACCEPTED    200 with a document id;
- RETRY       nothing was stored: the connection was never made, 429, 503 (and 401 after one refresh);
- FAILED      other 4xx: Cobalt refused this document, with its message;
- BLOCKED     403 login_required (the EHR link broke) or credentials Cobalt refuses: a person must act;
- AMBIGUOUS   the request left and no usable answer came back (read timeout, connection lost, 500, a 200 without an id,
              502 or 504: a gateway that gave up waiting, after Cobalt may have stored it): it may be in the chart, so
              it is never sent again automatically (unless COBALT_SERVER_ERROR_POLICY=retry says 500/502/504 are safe).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

import requests

RETRYABLE_STATUS = frozenset({429, 503})
# A gateway's 502/504 can come after the request reached Cobalt and was stored: as ambiguous as a 500.
SERVER_ERRORS = frozenset({500, 502, 504})
MAX_MESSAGE_CHARS = 500


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    RETRY = "retry"
    FAILED = "failed"
    BLOCKED = "blocked"
    AMBIGUOUS = "ambiguous"


@dataclasses.dataclass(frozen=True)
class CobaltAnswer:
    """What one upload attempt came to. `message` is Cobalt's own text (it may name the patient: ledger only)."""

    verdict: Verdict
    reason: str
    status_code: int | None = None
    document_id: str | None = None
    job_id: str | None = None
    message: str | None = None
    retry_after_seconds: float | None = None
    error_code: str | None = None  # e.g. login_required; safe to log
    elapsed_seconds: float = 0.0


def answer_json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def answer_text(value: Any) -> str | None:
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        return None
    return str(value).strip()[:MAX_MESSAGE_CHARS]


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def classify_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str], server_error_policy: str = "needs_review"
) -> CobaltAnswer:
    """Sort one HTTP answer from POST /v1/documents (see the module docstring)."""
    message = answer_text(body.get("message"))
    error = answer_text(body.get("error"))
    if 200 <= status < 300:
        document_id = answer_text(body.get("document_id"))
        if body.get("success") is False:
            return CobaltAnswer(Verdict.FAILED, message or "Cobalt refused the document", status, message=message)
        if document_id is None:
            return CobaltAnswer(
                Verdict.AMBIGUOUS, "Cobalt answered success without a document id: it may be filed", status
            )
        return CobaltAnswer(
            Verdict.ACCEPTED,
            "Accepted by Cobalt",
            status,
            document_id=document_id,
            job_id=answer_text(body.get("job_id")),
        )
    if status == 403 and error == "login_required":
        return CobaltAnswer(
            Verdict.BLOCKED,
            "Cobalt says the EHR login behind the access token expired (login_required): re-link the account, "
            "then re-apply this object's tags to send it",
            status,
            message=message,
            error_code="login_required",
        )
    if status == 401:
        return CobaltAnswer(
            Verdict.BLOCKED,
            "Cobalt refused DocDrop's credentials (401): fix the Cobalt credentials secret, "
            "then re-apply this object's tags to send it",
            status,
            message=message,
            error_code="unauthorized",
        )
    if status in RETRYABLE_STATUS:
        return CobaltAnswer(
            Verdict.RETRY,
            f"Cobalt was unavailable (HTTP {status}) and stored nothing",
            status,
            retry_after_seconds=retry_after_seconds(headers.get("Retry-After") or headers.get("retry-after")),
        )
    if status in SERVER_ERRORS and server_error_policy == "retry":
        return CobaltAnswer(Verdict.RETRY, f"Cobalt answered HTTP {status} (configured as safe to retry)", status)
    if 400 <= status < 500:
        return CobaltAnswer(
            Verdict.FAILED,
            f"Cobalt refused the document (HTTP {status}): {message or error or 'no message given'}",
            status,
            message=message,
            error_code=error,
        )
    return CobaltAnswer(
        Verdict.AMBIGUOUS,
        f"Cobalt answered HTTP {status} after receiving the document: it may or may not be filed",
        status,
    )


def classify_exception(exc: BaseException) -> CobaltAnswer:
    """Sort a failed request: only a connection that was never made is safe to retry."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return CobaltAnswer(Verdict.RETRY, "Could not connect to Cobalt (connect timeout); nothing was sent")
    if isinstance(exc, requests.exceptions.ConnectionError) and _never_connected(exc):
        return CobaltAnswer(Verdict.RETRY, "Could not connect to Cobalt (connection refused); nothing was sent")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return CobaltAnswer(
            Verdict.AMBIGUOUS, "Cobalt did not answer in time after the document was sent: it may or may not be filed"
        )
    return CobaltAnswer(
        Verdict.AMBIGUOUS,
        f"The connection to Cobalt failed during the upload ({type(exc).__name__}): it may or may not be filed",
    )


def _never_connected(exc: BaseException) -> bool:
    """True when the TCP connection (or DNS) failed, before any byte of the request could leave."""
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NewConnectionError | NameResolutionError | ConnectionRefusedError):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False


def backoff_seconds(attempt: int, retry_after: float | None, base: float = 0.5, cap: float = 8.0) -> float:
    """Full-jitter exponential backoff for retry `attempt` (0-based); `Retry-After` is a floor when Cobalt gives one."""
    jittered = random.uniform(0, min(cap, base * 2**attempt))  # jitter, not a secret
    return max(jittered, retry_after or 0.0)
