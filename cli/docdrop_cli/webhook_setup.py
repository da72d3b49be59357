"""`docdrop register-webhook` and `docdrop rotate-webhook-secret`: Cobalt's webhook set-up, with the signing secret
kept in Secrets Manager as the webhook function reads it (`current`, `previous`, `previous_expires_at`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from docdrop.cobalt import CobaltClient, CobaltSetupError, RegisteredWebhook
from docdrop.ledger import parse_moment
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
    previous = signing.get("current")
    document: dict[str, Any] = {"current": registration.secret, "previous": ""}
    if previous not in (None, "", PLACEHOLDER) and previous != registration.secret:
        document["previous"] = previous  # deliveries signed with it may still be on their way
        document["previous_expires_at"] = _in_24_hours()
    store.write("signing_secret", document)
    _report(args, out, "registered", registration.webhook_id, "Registered the webhook with Cobalt; secret stored")
    return 0


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


def _in_24_hours() -> str:
    return (datetime.now(UTC) + PREVIOUS_SECRET_LIFETIME).isoformat(timespec="seconds")


def _report(args: argparse.Namespace, out: TextIO, action: str, webhook_id: str | None, text: str) -> None:
    if getattr(args, "json", False):
        write_json({"action": action, "webhook_id": webhook_id}, out)
    else:
        out.write(text + ".\n")
