"""Control items: run leases and checkpoints (`pk=RUN#<name>`), Cobalt's circuit breaker (`pk=BREAKER#<account>`,
docdrop.breaker) and account links (`pk=TOKEN#<reference>`, with their events as items that expire)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from docdrop.ledger.expression import Expression, plain
from docdrop.ledger.model import LINK_EVENT_PREFIX, LINK_EVENT_RETENTION, MAX_LINK_MESSAGE, now_iso
from docdrop.ledger.table import LedgerTable, failure


class RunLeases(LedgerTable):
    """One runner of a named job at a time (the reconciler, a CLI backfill), and where it stopped."""

    def acquire_run_lease(self, name: str, owner: str, seconds: float) -> bool:
        """A lease on a named job (e.g. the reconciler): True for exactly one owner until it expires or is released."""
        now = datetime.now(UTC)
        e = Expression()
        sets = e.assign(
            {"owner": owner, "lease_until": (now + timedelta(seconds=seconds)).isoformat(timespec="microseconds")}
        )
        condition = (
            f"attribute_not_exists({e.n('pk')}) OR {e.n('lease_until')} < {e.v(now.isoformat(timespec='microseconds'))}"
            f" OR {e.n('owner')} = {e.v(owner)}"
        )
        return self._conditional_update(self._run_key(name), e, "SET " + ", ".join(sets), condition)

    def release_run_lease(self, name: str, owner: str, state: Mapping[str, Any]) -> None:
        """End the lease and keep `state` (where the job stopped) for the next run."""
        e = Expression()
        sets = e.assign({"state": dict(state), "lease_until": "", "updated_at": now_iso()})
        self._conditional_update(self._run_key(name), e, "SET " + ", ".join(sets), f"{e.n('owner')} = {e.v(owner)}")

    def checkpoint_run(self, name: str, owner: str, state: Mapping[str, Any], seconds: float) -> bool:
        """Keep where a leased job has got to and extend its lease; False when the lease is no longer `owner`'s."""
        e = Expression()
        until = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="microseconds")
        sets = e.assign({"state": dict(state), "lease_until": until, "updated_at": now_iso()})
        return self._conditional_update(
            self._run_key(name), e, "SET " + ", ".join(sets), f"{e.n('owner')} = {e.v(owner)}"
        )

    def run_state(self, name: str) -> dict[str, Any]:
        item = self._get(self._run_key(name)) or {}
        state = item.get("state")
        return dict(state) if isinstance(state, Mapping) else {}


class BreakerStore(LedgerTable):
    """Cobalt's circuit breaker, one item per account, shared by every uploader."""

    def breaker_state(self, account: str) -> dict[str, Any]:
        """The breaker as every uploader shares it, read eventually consistent (half the read units): it is advice, and
        the one probe after a cool-down is taken by a conditional write, not by this read."""
        return self._get(self._breaker_key(account), consistent=False) or {}

    def record_breaker_failure(
        self,
        account: str,
        now: datetime,
        *,
        window: timedelta,
        threshold: int,
        cool_down: timedelta,
        hold_until: datetime | None,
        probe: bool = False,
    ) -> dict[str, Any]:
        """One unavailable answer: counted (afresh when the last was longer than `window` ago); at `threshold` the
        breaker opens for `cool_down`. Small updates whose races are harmless: a count off by one opens it a call
        later or sooner. The `probe`'s own answer ends its lease, so the next caller may find out."""
        moment = now.isoformat(timespec="microseconds")
        noted = {"last_failure_at": moment, **({"probe_until": moment} if probe else {})}
        if hold_until is not None:
            noted["hold_until"] = hold_until.isoformat(timespec="microseconds")
        e = Expression()
        failures = e.n("failures")
        sets = [f"{failures} = if_not_exists({failures}, {e.v(0)}) + {e.v(1)}", *e.assign(noted)]
        stale = (now - window).isoformat(timespec="microseconds")
        recent = f"attribute_not_exists({e.n('last_failure_at')}) OR {e.n('last_failure_at')} >= {e.v(stale)}"
        try:
            state = self._update_breaker(account, e, "SET " + ", ".join(sets), recent)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise failure(exc, "update") from exc
            e = Expression()  # the last failure is older than the window: count from one again
            state = self._update_breaker(account, e, "SET " + ", ".join(e.assign({"failures": 1, **noted})))
        if int(state.get("failures") or 0) >= threshold:
            e = Expression()
            sets = e.assign(
                {
                    "open_until": (now + cool_down).isoformat(timespec="microseconds"),
                    "cool_down_seconds": Decimal(str(cool_down.total_seconds())),
                },
                keep_first={"opened_at": moment},
            )
            state = self._update_breaker(account, e, "SET " + ", ".join(sets)) or state
        return state

    def _update_breaker(self, account: str, e: Expression, update: str, condition: str | None = None) -> dict[str, Any]:
        """One UpdateItem of the breaker item; the item as it now stands."""
        answer = self._call(
            "update_item",
            TableName=self._table,
            Key=self._breaker_key(account),
            ReturnValues="ALL_NEW",
            **e.kwargs(update, condition),
        )
        return plain(answer.get("Attributes")) or {}

    def take_breaker_probe(self, account: str, now: datetime, lease_until: datetime) -> bool:
        """The one probe after a cool-down: True for exactly one caller until `lease_until`."""
        e = Expression()
        sets = e.assign({"probe_until": lease_until.isoformat(timespec="microseconds")})
        condition = (
            f"attribute_not_exists({e.n('probe_until')}) OR "
            f"{e.n('probe_until')} < {e.v(now.isoformat(timespec='microseconds'))}"
        )
        return self._conditional_update(self._breaker_key(account), e, "SET " + ", ".join(sets), condition)

    def close_breaker(self, account: str, warm_until: datetime | None = None) -> dict[str, Any]:
        """Cobalt answered: the breaker forgets its failures and its probe (an UpdateItem: the uploader may not delete
        items), and Cobalt is known to answer until `warm_until`. The item as it now stands."""
        e = Expression()
        names = (
            "failures",
            "last_failure_at",
            "open_until",
            "opened_at",
            "probe_until",
            "hold_until",
            "cool_down_seconds",
        )
        update = "REMOVE " + ", ".join(e.n(name) for name in names)
        if warm_until is not None:
            update = (
                "SET "
                + ", ".join(e.assign({"warm_until": warm_until.isoformat(timespec="microseconds")}))
                + " "
                + update
            )
        return self._update_breaker(account, e, update)


class AccountLinkStore(LedgerTable):
    """Account links: a fixed-size item per link, and its events (`sk=EVT#<event id>`) as items that expire."""

    def get_account_link(self, reference_id: str, consistent: bool = True) -> dict[str, Any] | None:
        """The account link's item; `consistent=False` for a cache's refresh (half the read units, a second behind)."""
        return self._get(self._link_key(reference_id), consistent)

    def record_login_required(self, reference_id: str, event_id: str, created: str, message: str | None) -> bool:
        """`access_token.login_required` for one account link, in one call; False for a repeated event id."""
        now = now_iso()
        link = {
            "status": "LOGIN_REQUIRED",
            "reason": "Cobalt reports the EHR login behind this access token stopped working; re-link it",
            "status_at": now,
            "updated_at": now,
            "access_token_reference_id": reference_id,
        }
        return self._record_link_event(reference_id, event_id, link, {"created": created, "message": message})

    def record_password_warning(self, reference_id: str, event_id: str, created: str, message: str | None) -> bool:
        """`access_token.password_change_warning`: the link's latest warning (shown by `docdrop accounts`); the link
        still works, so its status does not change. False for a repeated event id."""
        now = now_iso()
        link = {"updated_at": now, "access_token_reference_id": reference_id, "password_warning_at": now}
        entry = {"created": created, "message": message, "warning": True}
        return self._record_link_event(reference_id, event_id, link, entry)

    def _record_link_event(
        self, reference_id: str, event_id: str, link: Mapping[str, Any], entry: Mapping[str, Any]
    ) -> bool:
        """One account-link event: the link item's few fields, and the event as a small item of its own (`EVT#<id>`,
        which expires), in one transaction of two UpdateItems; False when that event id was recorded before.

        The link item never grows: a weekend of login_required answers adds items that expire, never list entries to
        an item that DynamoDB would refuse past 400 KB (and the lists older items kept are dropped here).
        """
        now = now_iso()
        e = Expression()
        update = "SET " + ", ".join(e.assign(link)) + " REMOVE " + ", ".join(map(e.n, ("history", "event_ids")))
        v = Expression()
        message = entry.get("message")
        values = {
            **entry,
            "message": str(message)[:MAX_LINK_MESSAGE] if message else None,
            "at": now,
            "event_id": event_id,
            "expires_at": int((datetime.now(UTC) + LINK_EVENT_RETENTION).timestamp()),
        }
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {"Update": {"TableName": self._table, "Key": self._link_key(reference_id), **e.kwargs(update)}},
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {
                                "pk": {"S": f"TOKEN#{reference_id}"},
                                "sk": {"S": f"{LINK_EVENT_PREFIX}{event_id}"},
                            },
                            **v.kwargs("SET " + ", ".join(v.assign(values)), f"attribute_not_exists({v.n('pk')})"),
                        }
                    },
                ],
            )
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if exc.response["Error"]["Code"] == "TransactionCanceledException" and reasons[1:2] == [
                "ConditionalCheckFailed"
            ]:
                return False
            raise failure(exc, "account link write") from exc
        return True

    def link_events(self, reference_id: str) -> list[dict[str, Any]]:
        """The account link's recorded events (login_required, warnings, re-links) still kept, oldest first."""
        events = self._items_under(f"TOKEN#{reference_id}", LINK_EVENT_PREFIX)
        found = [{k: v for k, v in i.items() if k not in ("pk", "sk")} for i in events]
        return sorted(found, key=lambda i: str(i.get("at")))

    def mark_link_resent(self, reference_id: str, relinked_at: str) -> None:
        """The account's BLOCKED objects from before `relinked_at` were sent again: not again for this re-link."""
        e = Expression()
        sets = e.assign({"resent_at": relinked_at})
        self._call(
            "update_item", TableName=self._table, Key=self._link_key(reference_id), **e.kwargs("SET " + ", ".join(sets))
        )

    def record_relink(self, reference_id: str, by: str) -> None:
        """A person says the account's EHR link works again (`docdrop accounts relink`), or a call through it passed."""
        now = now_iso()
        link = {
            "status": "LINKED",
            "reason": f"Re-linked ({by})",
            "status_at": now,
            "updated_at": now,
            "access_token_reference_id": reference_id,
        }
        self._record_link_event(reference_id, f"relink:{now}", link, {"relinked_by": by})
