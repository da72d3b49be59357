"""Fingerprints (`pk=FP#<keyed fingerprint>`, `sk=FP`): which object version sent the same file, patient and folder
within the duplicate window (docdrop.uploader's duplicate check), held by one conditional write."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from docdrop.ledger.expression import Expression, plain
from docdrop.ledger.model import IN_CHART, ObjectRef
from docdrop.ledger.table import LedgerTable, failure, ref_attributes


class FingerprintStore(LedgerTable):
    """Fingerprint items: one version holds a fingerprint for its window; a take-over only as the holder was read."""

    def hold_fingerprint(
        self,
        fingerprint: str,
        ref: ObjectRef,
        window: timedelta,
        replacing: Mapping[str, Any] | None = None,
        in_chart: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Hold a keyed fingerprint of (file, patient, folder) for this object version for `window`.

        Returns None when it is held for this version now; else the version that holds it (it sent the same within the
        window). With `replacing` (the holder as a caller read it: one that was never filed, a producer's
        allow_duplicate, a person's resend), it takes the fingerprint over from that holder only, as it was read. Always
        one conditional UpdateItem, so two identical versions racing each other, even past a holder they both may
        replace, cannot both pass.

        `in_chart` (a take-over sent anyway past a version that may be in the chart: its bucket, key, version, object id
        and `held_at`) is kept as the item's `in_chart`, so that when this version is refused, the next identical one
        still finds the copy in the chart (`chart_copy`) instead of a refused holder it may replace. It is never
        removed: the holder's own later holds (a retry after BLOCKED) keep it, and one from before the window is
        ignored by whoever reads it.
        """
        now = datetime.now(UTC)
        e = Expression()
        sets = e.assign(
            {
                **ref_attributes(ref),
                "held_at": now.isoformat(timespec="microseconds"),
                "expires_at": int(
                    (now + window + timedelta(days=1)).timestamp()  # useless after the window (the kept copy's too)
                ),
                **({IN_CHART: dict(in_chart)} if in_chart else {}),
            }
        )
        free = f"attribute_not_exists({e.n('pk')}) OR {e.n('object_id')} = {e.v(ref.object_id)}"
        if replacing is None:  # (placeholders only for what the expression uses: DynamoDB refuses unused ones)
            condition = f"{free} OR {e.n('held_at')} < {e.v((now - window).isoformat(timespec='microseconds'))}"
        else:
            holder, held_at = e.v(str(replacing.get("object_id"))), e.v(str(replacing.get("held_at")))
            condition = f"{free} OR ({e.n('object_id')} = {holder} AND {e.n('held_at')} = {held_at})"
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key={"pk": {"S": f"FP#{fingerprint}"}, "sk": {"S": "FP"}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **e.kwargs("SET " + ", ".join(sets), condition),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise failure(exc, "fingerprint write") from exc
            old: Any = exc.response.get("Item")
            return plain(old) or {}
        return None
