"""The Cobalt client: the one place that talks HTTP to Cobalt (uploads, the event log, webhook registration, a
document's bytes). What each answer means, and so whether it may ever be sent again, is `docdrop.cobalt_answers`'."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from docdrop.accounts import CobaltAccounts
from docdrop.cobalt_answers import (
    CobaltAnswer,
    Verdict,
    answer_json,
    answer_text,
    classify_exception,
    classify_response,
)
from docdrop.cobalt_events import envelope_from_log_item
from docdrop.contract import UploadFields
from docdrop.multipart import MultipartBody


@dataclasses.dataclass(frozen=True)
class EventLogPage:
    """One page of Cobalt's event log, each item in the webhook's envelope shape (see `docdrop.cobalt_events`)."""

    events: list[dict[str, Any]]
    page: int
    total_pages: int


class EventLogUnavailable(Exception):
    """The event log could not be read (no connection, an error status, an answer that is not a page)."""


@dataclasses.dataclass(frozen=True)
class WebhookRegistration:
    webhook_id: str | None
    secret: str
    previous_valid_until: str | None = None  # after a rotation, when Cobalt stops honouring the old secret


@dataclasses.dataclass(frozen=True)
class RegisteredWebhook:
    webhook_id: str
    url: str


class CobaltSetupError(Exception):
    """A set-up call (webhook registration, listing, rotation) Cobalt did not accept, or no answer at all."""

    def __init__(self, message: str, status_code: int | None = None, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code


def webhook_secret_from(answer: Mapping[str, Any]) -> str | None:
    """The signing secret in a POST /v1/webhook answer, under any of the names Cobalt's docs have used."""
    nested = answer.get("webhook")
    for value in (
        answer.get("webhook_secret_key"),
        answer.get("webhook_secret"),
        nested.get("secret") if isinstance(nested, Mapping) else None,
    ):
        if isinstance(value, str) and value:
            return value
    return None


Credentials = Callable[[bool], Mapping[str, Any]]


class CobaltClient:
    """POST /v1/documents with requests. One Session per container; credentials re-read once on a 401."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 30.0,
        server_error_policy: str = "needs_review",
        session: requests.Session | None = None,
        pool_size: int = 10,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._url = self._base + "/documents"
        self._credentials = credentials
        self._credentials_lock = threading.Lock()
        self.timeout = (connect_timeout, read_timeout)
        self._policy = server_error_policy
        self._session = session or requests.Session()
        if session is None:
            # Retries are decided here, never by urllib3: a blind retry of a POST could file the document twice.
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
            self._session.mount("https://", adapter)
            self._session.mount("http://", adapter)

    def _headers(self, refresh: bool, account: str | None = None) -> dict[str, str]:
        """The three auth headers; the access token is the named account's (docdrop.accounts), else the first one's."""
        with self._credentials_lock:  # a cold batch's threads would otherwise all read the secret at once
            credentials = self._credentials(refresh)
        accounts = CobaltAccounts.from_secret(credentials)
        chosen = accounts.get(account) if account else next(iter(accounts.accounts), None)
        if chosen is None:
            raise KeyError(f"no Cobalt account {account or ''} in the credentials secret".replace("  ", " "))
        return {
            "client_id": str(credentials["client_id"]),
            "client_secret": str(credentials["client_secret"]),
            "access_token": chosen.access_token,
        }

    def register_webhook(self, webhook_url: str) -> WebhookRegistration:
        """POST /v1/webhook: register `webhook_url`; the answer holds the signing secret (set-up, not the data path)."""
        body = self._setup_call("POST", "/webhook", "register the webhook", {"webhook_url": webhook_url})
        secret = webhook_secret_from(body)
        if secret is None:
            raise CobaltSetupError("Cobalt's registration answer holds no signing secret", 200)
        nested = body.get("webhook")
        webhook_id = (
            body.get("webhook_id") or body.get("id") or (nested.get("id") if isinstance(nested, dict) else None)
        )
        return WebhookRegistration(str(webhook_id) if webhook_id else None, secret)

    def list_webhooks(self) -> list[RegisteredWebhook]:
        """GET /v1/webhook: the URLs registered for this account (set-up and `docdrop doctor`, not the data path)."""
        body = self._setup_call("GET", "/webhook", "list the webhooks")
        found = body.get("webhook_urls") or body.get("webhooks") or []
        return [
            RegisteredWebhook(str(w.get("id") or ""), str(w.get("url") or w.get("webhook_url") or ""))
            for w in found
            if isinstance(w, dict)
        ]

    def rotate_webhook_secret(self, webhook_id: str | None) -> WebhookRegistration:
        """POST /v1/webhook/{id}/rotate-secret (older docs: /v1/webhook/rotate-secret): the new signing secret.

        Cobalt keeps the previous secret working for 24 hours.
        """
        paths = [f"/webhook/{webhook_id}/rotate-secret"] if webhook_id else []
        paths.append("/webhook/rotate-secret")
        for path in paths:
            try:
                body = self._setup_call("POST", path, "rotate the webhook secret")
            except CobaltSetupError as exc:
                if exc.status_code == 404 and path != paths[-1]:
                    continue  # an older Cobalt: the account-wide path
                raise
            secret = webhook_secret_from(body)
            if secret is None:
                raise CobaltSetupError("Cobalt's rotation answer holds no secret", 200)
            return WebhookRegistration(webhook_id, secret, answer_text(body.get("previous_secret_valid_until")))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _setup_call(self, method: str, path: str, what: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One set-up call; CobaltSetupError (HTTP status and Cobalt's message) unless it answers 2xx."""
        try:
            response = self._session.request(
                method,
                self._base + path,
                headers=self._headers(False),
                json=dict(body) if body is not None else None,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise CobaltSetupError(f"no answer from Cobalt at {self._base} to {what} ({type(exc).__name__})") from None
        with response:
            answer = answer_json(response)
        if 300 <= response.status_code < 400:
            raise CobaltSetupError(
                f"Cobalt's address answered HTTP {response.status_code} (a redirect), which DocDrop never follows: "
                f"check the base URL {self._base} (CobaltBaseUrl)",
                response.status_code,
                "redirect",
            )
        if not 200 <= response.status_code < 300:
            message = answer_text(answer.get("message")) or answer_text(answer.get("error")) or "no message"
            raise CobaltSetupError(
                f"Cobalt refused to {what} (HTTP {response.status_code}): {message}",
                response.status_code,
                answer_text(answer.get("error")),
            )
        return answer

    def delete_webhook(self, webhook_id: str) -> bool:
        """DELETE /v1/webhook/{id}; False when Cobalt did not confirm it (the URL may stay registered)."""
        try:
            response = self._session.delete(
                f"{self._base}/webhook/{webhook_id}",
                headers=self._headers(False),
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException:
            return False
        with response:
            return response.status_code in (200, 204)

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
        """GET /v1/webhook-events: one page of past events (of a type, a delivery status) since `start_date`, oldest
        first.

        Oldest first, so pages already read stay put while new events are appended: a reader can resume by page.
        """
        params: dict[str, str | int] = {
            "start_date": start_date.isoformat(),
            "page": page,
            "page_size": min(page_size, 100),
            "sort": "asc",
        }
        if event_type:
            params["event_type"] = event_type
        if delivery_status:  # named `status` in one version of the docs, `delivery_status` in another: send both
            params["status"] = params["delivery_status"] = delivery_status
        try:
            response = self._session.get(
                self._base + "/webhook-events",
                headers=self._headers(False, account),
                params=params,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise EventLogUnavailable(f"no answer from Cobalt's event log ({type(exc).__name__})") from None
        except Exception as exc:  # the credentials could not be read
            raise EventLogUnavailable(f"could not read the Cobalt credentials ({type(exc).__name__})") from None
        with response:
            body = answer_json(response)
        items = body.get("webhook_events")
        if response.status_code != 200 or not isinstance(items, list):
            code = answer_text(body.get("error")) or ""
            raise EventLogUnavailable(f"Cobalt's event log answered HTTP {response.status_code} {code}".strip())
        raw_pagination = body.get("pagination")
        pagination: dict[str, Any] = raw_pagination if isinstance(raw_pagination, dict) else {}
        try:
            total_pages = int(pagination.get("total_pages") or page)
        except (TypeError, ValueError):
            total_pages = page
        events = [e for e in (envelope_from_log_item(i) for i in items if isinstance(i, dict)) if e is not None]
        return EventLogPage(events, page, max(total_pages, page if items else 0))

    def document_sha256(self, document_id: str, max_bytes: int = 16 * 1024 * 1024) -> str | None:
        """The sha256 of a document's bytes by GET /v1/documents/{id} (described only in Cobalt's preview docs, for
        referrals): optional evidence. None for a 404, an error or anything unexpected: never "not filed"."""
        try:
            response = self._session.get(
                f"{self._base}/documents/{document_id}",
                headers=self._headers(False),
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
        except Exception:  # no connection, credentials unreadable: no evidence either way
            return None
        with response:
            if response.status_code != 200 or "json" in response.headers.get("Content-Type", ""):
                return None
            digest = hashlib.sha256()
            read = 0
            for chunk in response.iter_content(64 * 1024):
                read += len(chunk)
                if read > max_bytes:
                    return None
                digest.update(chunk)
        return digest.hexdigest() if read else None

    def upload_document(
        self,
        fields: UploadFields,
        filename: str,
        content_type: str,
        content: bytes,
        timeout: float | None = None,
        account: str | None = None,
    ) -> CobaltAnswer:
        """One upload; on a 401 the credentials are read afresh and the request sent once more (401: nothing stored)."""
        started = time.monotonic()
        answer = self._post(fields, filename, content_type, content, refresh=False, timeout=timeout, account=account)
        if answer.status_code == 401:
            answer = self._post(fields, filename, content_type, content, refresh=True, timeout=timeout, account=account)
        return dataclasses.replace(answer, elapsed_seconds=time.monotonic() - started)

    def _post(
        self,
        fields: UploadFields,
        filename: str,
        content_type: str,
        content: bytes,
        *,
        refresh: bool,
        timeout: float | None,
        account: str | None = None,
    ) -> CobaltAnswer:
        try:
            headers = self._headers(refresh, account)
        except Exception as exc:  # nothing was sent: the credentials could not be read
            return CobaltAnswer(Verdict.RETRY, f"Could not read the Cobalt credentials ({type(exc).__name__})")
        read_timeout = self.timeout[1] if timeout is None else max(0.1, min(self.timeout[1], timeout))
        try:
            body = MultipartBody(fields.form(), "document", filename, content_type, content)  # the file, not a copy
            response = self._session.post(
                self._url,
                headers={**headers, "Content-Type": body.content_type},
                data=body,
                timeout=(self.timeout[0], read_timeout),
                # requests re-sends a 307/308's POST (credentials, MRN, file) wherever it points: never follow.
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            return classify_exception(exc)
        with response:
            if response.is_redirect or 300 <= response.status_code < 400:
                return CobaltAnswer(
                    Verdict.FAILED,
                    f"Cobalt's address answered HTTP {response.status_code} (a redirect), which DocDrop never "
                    f"follows: nothing was stored. Check the configured base URL {self._base} (CobaltBaseUrl)",
                    response.status_code,
                    error_code="redirect",
                )
            return classify_response(response.status_code, answer_json(response), response.headers, self._policy)
