"""Cobalt accounts: one access token per linked set of EHR credentials, under one client id and secret.

The credentials secret holds either today's single token or named accounts:

    {"client_id": "...", "client_secret": "...", "access_token": "...", "reference_id": "..."}    (account "default")
    {"client_id": "...", "client_secret": "...",
     "accounts": {"practice-a": {"access_token": "...", "reference_id": "practice-a"}, "practice-b": {...}}}

Adding a practice is adding an account to the secret (read again within the secret's cache age): no redeploy. An object
names its account with the `cobalt_account` tag, or the stack maps key prefixes to accounts
(`COBALT_ACCOUNT_PREFIXES`, e.g. `practice-a/=practice-a,practice-b/=practice-b`); with one account nothing is named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

DEFAULT = "default"


@dataclasses.dataclass(frozen=True)
class CobaltAccount:
    name: str
    access_token: str
    reference_id: str  # Cobalt's access_token_reference_id, echoed in its webhooks; the name when none is set
    declared: bool = True  # False: the secret gave no reference id, so Cobalt's events cannot be told to be its


@dataclasses.dataclass(frozen=True)
class CobaltAccounts:
    accounts: tuple[CobaltAccount, ...]

    @classmethod
    def from_secret(cls, document: Mapping[str, Any]) -> CobaltAccounts:
        named = document.get("accounts")
        if isinstance(named, Mapping) and named:
            found = []
            for name, value in sorted(named.items()):
                if not isinstance(value, Mapping) or not str(value.get("access_token") or ""):
                    continue  # an account without a token cannot send: it is as good as absent
                given = value.get("reference_id") or value.get("access_token_reference_id")
                found.append(CobaltAccount(str(name), str(value["access_token"]), str(given or name), bool(given)))
            return cls(tuple(found))
        token = str(document.get("access_token") or "")
        given = document.get("reference_id") or document.get("access_token_reference_id")
        return cls((CobaltAccount(DEFAULT, token, str(given or DEFAULT), bool(given)),) if token else ())

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.accounts]

    def get(self, name: str | None) -> CobaltAccount | None:
        if name is None:
            return self.accounts[0] if len(self.accounts) == 1 else None
        return next((a for a in self.accounts if a.name == name), None)

    def by_reference(self, reference_id: str | None) -> CobaltAccount | None:
        return next((a for a in self.accounts if a.reference_id == reference_id), None)


FALLBACK = "*"  # `*=main` in the prefix map: objects that name no account and match no prefix go to `main`


def account_of(item: Mapping[str, Any]) -> str:
    """The account an object item went to; items recorded before accounts existed are the `default` one's."""
    return str(item.get("account") or DEFAULT)


def parse_prefix_map(text: str | None) -> dict[str, str]:
    """`practice-a/=a,practice-b/=b,*=a` → {"practice-a/": "a", "practice-b/": "b", "*": "a"}."""
    result: dict[str, str] = {}
    for part in (text or "").split(","):
        prefix, _, name = part.strip().partition("=")
        if prefix and name:
            result[prefix.strip()] = name.strip()
    return result


@dataclasses.dataclass(frozen=True)
class Route:
    account: CobaltAccount | None
    problem: str | None = None


def route(
    accounts: CobaltAccounts, named: str | None, key: str, watched_prefix: str, prefixes: Mapping[str, str]
) -> Route:
    """The account an object goes to: its `cobalt_account` tag, else the longest matching prefix, else the only one."""
    known = ", ".join(accounts.names) or "none"
    if named:
        found = accounts.get(named.strip())
        if found is None:
            return Route(None, f"Unknown Cobalt account {named.strip()!r} (cobalt_account); accounts known: {known}")
        return Route(found)
    relative = key[len(watched_prefix) :] if key.startswith(watched_prefix) else key
    for prefix in sorted((p for p in prefixes if p != FALLBACK), key=len, reverse=True):
        if relative.startswith(prefix) or key.startswith(prefix):
            found = accounts.get(prefixes[prefix])
            if found is None:
                return Route(
                    None,
                    f"The prefix {prefix!r} maps to the unknown account {prefixes[prefix]!r}; accounts known: {known}",
                )
            return Route(found)
    only = accounts.get(prefixes[FALLBACK]) if FALLBACK in prefixes else accounts.get(None)
    if only is None:
        return Route(None, f"No Cobalt account named: tag it cobalt_account (accounts known: {known})")
    return Route(only)
