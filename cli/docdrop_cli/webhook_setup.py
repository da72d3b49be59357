"""`docdrop register-webhook`, `rotate-webhook-secret` and `rotate-webhook-path`: Cobalt's webhook set-up, with the
signing secret kept in Secrets Manager as the webhook function reads it (`current`, `previous`,
`previous_expires_at`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

import requests
from docdrop.cobalt import CobaltClient, CobaltSetupError, RegisteredWebhook, WebhookRegistration
from docdrop.ledger import parse_moment
from docdrop.signature import sign_payload
from docdrop.webhook import PREVIOUS_SECRET_LIFETIME

from docdrop_cli.output import Interrupts, OperatorError, write_json
from docdrop_cli.target import Target, resolve_target

PLACEHOLDER = "REPLACE_ME"


class SecretStore:
    """The two secrets the set-up reads and writes."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._client = target.client("secretsmanager")

    def read(self, which: str) -> dict[str, Any]:
        name = self.target.need(which, "the " + which.replace("_", " "))
        text = self._client.get_secret_value(SecretId=name)["SecretString"]
        try:
            value = json.loads(text)
        except ValueError:
            raise OperatorError(f"secret {name} is not JSON: fill it as the README says") from None
        if not isinstance(value, dict):
            raise OperatorError(f"secret {name} is not a JSON object: fill it as the README says")
        return value

    def write(self, which: str, value: dict[str, Any]) -> None:
        self._client.put_secret_value(SecretId=self.target.need(which, which), SecretString=json.dumps(value))

    def last_changed(self, which: str) -> datetime | None:
        answer = self._client.describe_secret(SecretId=self.target.need(which, which))
        moment = answer.get("LastChangedDate")
        return moment if isinstance(moment, datetime) else None


def credentials_problem(credentials: dict[str, Any]) -> str | None:
    """What is wrong with the Cobalt credentials secret's values, if anything (one token, or named accounts)."""
    from docdrop.accounts import CobaltAccounts

    missing = [k for k in ("client_id", "client_secret") if not str(credentials.get(k) or "").strip()]
    accounts = CobaltAccounts.from_secret(credentials).accounts
    if not accounts:
        missing.append("access_token (or accounts)")
    if missing:
        return "missing " + ", ".join(missing)
    placeholders = [k for k in ("client_id", "client_secret") if credentials.get(k) == PLACEHOLDER]
    placeholders += [f"{a.name}'s access_token" for a in accounts if a.access_token == PLACEHOLDER]
    if placeholders:
        return "still the template's placeholder: " + ", ".join(placeholders)
    return None


def cobalt_for(target: Target, store: SecretStore, base_url: str | None = None) -> CobaltClient:
    credentials = store.read("credentials_secret")
    problem = credentials_problem(credentials)
    if problem:
        raise OperatorError(
            f"the Cobalt credentials secret is not filled ({problem}): put client_id, client_secret and access_token "
            f"in {target.credentials_secret} (aws secretsmanager put-secret-value)"
        )
    url = base_url or target.cobalt_base_url
    if not url:
        raise OperatorError("Cobalt's base URL is not known here: give --cobalt-url URL or --stack NAME")
    if not _private_enough(url):
        raise OperatorError(f"{url}: the Cobalt credentials go only over https:// (http:// only to this machine)", 2)
    return CobaltClient(url, lambda refresh: credentials, read_timeout=15.0)


def _private_enough(url: str) -> bool:
    """https anywhere; http only to a loopback address (the local sandbox), where nothing crosses a network."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def registered(cobalt: CobaltClient, url: str) -> RegisteredWebhook | None:
    return next((w for w in _cobalt_call(cobalt.list_webhooks) if w.url == url), None)


def _cobalt_call(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except CobaltSetupError as exc:
        hint = " (re-link the account in Cobalt)" if exc.error_code == "login_required" else ""
        raise OperatorError(f"{exc}{hint}") from None


def _set_up(args: argparse.Namespace) -> tuple[SecretStore, CobaltClient, str, dict[str, Any]]:
    """What both commands start from: the secrets, Cobalt with the stored credentials, the URL, the signing document."""
    target = resolve_target(args)
    store = SecretStore(target)
    cobalt = cobalt_for(target, store, args.cobalt_url)
    url = args.url or target.need("webhook_url", "the webhook URL (the stack's WebhookUrl output)")
    return store, cobalt, url, store.read("signing_secret")


def register_webhook_command(args: argparse.Namespace, out: TextIO) -> int:
    """Exit codes: 0 registered, or already registered with its secret stored; 1 registered but no secret stored."""
    store, cobalt, url, signing = _set_up(args)
    existing = registered(cobalt, url)
    if existing is not None:
        if signing.get("current") in (None, "", PLACEHOLDER):
            raise OperatorError(
                "the URL is registered with Cobalt but its signing secret was never stored here: "
                "run docdrop rotate-webhook-secret to get a new one",
                1,
            )
        _report(
            args, out, "unchanged", existing.webhook_id, f"Already registered with Cobalt (id {existing.webhook_id})"
        )
        return 0
    registration = _cobalt_call(cobalt.register_webhook, url)
    _store_registration(store, signing, registration)
    _report(args, out, "registered", registration.webhook_id, "Registered the webhook with Cobalt; secret stored")
    return 0


def _store_registration(store: SecretStore, signing: dict[str, Any], registration: WebhookRegistration) -> str:
    """Keep a new registration's secret as current; the one it replaces stays 24 h for deliveries on their way."""
    previous = signing.get("current")
    document: dict[str, Any] = {"current": registration.secret, "previous": ""}
    if previous not in (None, "", PLACEHOLDER) and previous != registration.secret:
        document["previous"] = previous
        document["previous_expires_at"] = _in_24_hours()
    store.write("signing_secret", document)
    return registration.secret


def rotate_webhook_secret_command(args: argparse.Namespace, out: TextIO) -> int:
    """New signing secret from Cobalt; no delivery is refused while it changes (see docdrop.webhook.ROTATION_WINDOW)."""
    store, cobalt, url, signing = _set_up(args)
    old = signing.get("current")
    if old in (None, "", PLACEHOLDER):
        raise OperatorError("no signing secret is stored yet: run docdrop register-webhook first")
    existing = registered(cobalt, url)
    if existing is None:
        raise OperatorError(f"{url} is not registered with Cobalt: run docdrop register-webhook first")
    with Interrupts():  # a secret Cobalt signs with but nobody stored would refuse every delivery: Ctrl-C waits
        store.write(
            "signing_secret", {**signing, "rotation_started_at": datetime.now(UTC).isoformat(timespec="seconds")}
        )
        if args.settle > 0:  # every webhook container re-reads its secret within this long, and then sees the mark
            print(f"docdrop: rotation marked; waiting {args.settle:g} s for the webhook to see it", file=sys.stderr)
            time.sleep(args.settle)
        try:
            rotation = cobalt.rotate_webhook_secret(existing.webhook_id or None)
        except CobaltSetupError as exc:
            if exc.status_code is None:  # the request left and no answer came: Cobalt may have rotated
                raise OperatorError(
                    f"{exc}: it may have rotated; run docdrop rotate-webhook-secret again now"
                ) from None
            store.write("signing_secret", signing)  # Cobalt refused: nothing changed there, nor here
            raise OperatorError(str(exc)) from None
        until = parse_moment(rotation.previous_valid_until)
        store.write(
            "signing_secret",
            {
                "current": rotation.secret,
                "previous": old,
                "previous_expires_at": until.isoformat(timespec="seconds") if until else _in_24_hours(),
            },
        )
    _report(args, out, "rotated", existing.webhook_id, "Rotated the signing secret; the old one is honoured for 24 h")
    return 0


def rotate_webhook_path_command(args: argparse.Namespace, out: TextIO) -> int:
    """Move Cobalt from the old path token's URL to the new one, once the new one takes a signed delivery.

    Run between two deploys: the first with WebhookPathToken=<new> and WebhookPreviousPathToken=<old> (both routes
    answer), the second with WebhookPreviousPathToken empty. Steps, each safe to run again:
    1. register the new URL with Cobalt (every registered URL gets every event, so both receive them for a while);
    2. send the new URL a signed check event, which the webhook answers 200 and ignores (proof that the route, the
       function and the stored secret work);
    3. remove the old URL's registration.
    Exit codes: 0 moved (or nothing left to move); 1 the new URL did not take the check, and the old one stays."""
    target = resolve_target(args)
    store = SecretStore(target)
    cobalt = cobalt_for(target, store, args.cobalt_url)
    new = target.need("webhook_url", "the webhook URL (the stack's WebhookUrl output)")
    old = target.previous_webhook_url
    if not old:
        raise OperatorError(
            "only one path token is deployed: deploy with WebhookPathToken=<a new token> and "
            "WebhookPreviousPathToken=<the token in use>, then run docdrop rotate-webhook-path",
            2,
        )
    signing = store.read("signing_secret")
    hooks = _cobalt_call(cobalt.list_webhooks)
    with Interrupts():  # a registration whose secret nobody stored would refuse every delivery: Ctrl-C waits
        if not any(w.url == new for w in hooks):
            signing = {"current": _store_registration(store, signing, _cobalt_call(cobalt.register_webhook, new))}
    problem = check_delivery(new, str(signing.get("current") or ""))
    if problem:
        raise OperatorError(
            f"the new URL did not take a signed check event ({problem}); Cobalt keeps delivering to the old one too. "
            "Check the deploy (WebhookUrl) and run docdrop rotate-webhook-path again",
            1,
        )
    for hook in (w for w in hooks if w.url == old):
        if not cobalt.delete_webhook(hook.webhook_id):
            raise OperatorError("Cobalt did not confirm removing the old URL: run docdrop rotate-webhook-path again")
    _report(
        args,
        out,
        "moved",
        next((w.webhook_id for w in _cobalt_call(cobalt.list_webhooks) if w.url == new), None),
        "Cobalt delivers to the new URL only; deploy again with WebhookPreviousPathToken empty",
    )
    return 0


def check_delivery(url: str, secret: str, timeout: float = 10.0) -> str | None:
    """POST a signed check event (no PHI: an id, a type and a time) to the webhook; None when it answered 200."""
    if not secret or secret == PLACEHOLDER:
        return "no signing secret is stored"
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event = {"id": f"docdrop-check-{uuid.uuid4()}", "object": "event", "created": now, "type": "docdrop.check"}
    body = json.dumps(event, separators=(",", ":")).encode("utf-8")
    headers = {
        "content-type": "application/json",
        "cobalt-verification": sign_payload(secret, body),
        "webhook-id": event["id"],
        "webhook-timestamp": now,
        "webhook-attempt": "1",
    }
    try:
        response = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.exceptions.RequestException as exc:
        return type(exc).__name__
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


def _in_24_hours() -> str:
    return (datetime.now(UTC) + PREVIOUS_SECRET_LIFETIME).isoformat(timespec="seconds")


def _report(args: argparse.Namespace, out: TextIO, action: str, webhook_id: str | None, text: str) -> None:
    if getattr(args, "json", False):
        write_json({"action": action, "webhook_id": webhook_id}, out)
    else:
        out.write(text + ".\n")
