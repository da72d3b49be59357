"""The same page twice: a version identical (file, patient, folder) to one sent within the duplicate window is not
sent again; what recognises an attempt's document later (its evidence)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from docdrop.contract import Accepted
from docdrop.evidence import document_fingerprint, patient_folder_fingerprint
from docdrop.ledger import IN_CHART, Claim, LedgerError, ObjectRef, Status, parse_moment
from docdrop.observability import MetricName
from docdrop.uploader.base import UploaderBase
from docdrop.uploader.results import RECEIVED, ObjectResult, RetryLater, count


class DuplicateCheck(UploaderBase):
    """Holds the keyed fingerprint of each version sent, and finds the copy that may be in the chart."""

    def _identical_one_sent(self, ref: ObjectRef, claim: Claim, decision: Accepted, digest: str) -> ObjectResult | None:
        """DUPLICATE when the same file, patient and folder went out within the window (an SDK's retried PutObject,
        a scanner sending twice); None to send it. Compared by a keyed fingerprint, never the MRN in clear."""
        if self._fingerprint_key is None:
            return None
        fields = decision.fields
        fingerprint = document_fingerprint(self._fingerprint_key(), fields.patient_mrn, fields.folder_name, digest)
        # Sent anyway: a producer's allow_duplicate, or a person's resend of a DUPLICATE. A person's resend of a
        # review says this version is not in the chart, not that its page is not: an identical version sent meanwhile
        # makes it a DUPLICATE (which the person may then send anyway).
        force = decision.allow_duplicate or (claim.resend_approved and claim.previous_status == Status.DUPLICATE.value)
        copy: dict[str, Any] | None = None
        try:
            holder = self._ledger.hold_fingerprint(fingerprint, ref, self._duplicate_window)
            # Taken over only from the holder as read: sent anyway (a producer's or a person's say), or one whose
            # version was refused (say, for a staff id fixed since) with no copy in the chart, so this one is not a
            # second copy. Another version racing past the same holder then finds this one holding it. Sent anyway
            # past a copy that may be in the chart, the fingerprint keeps that copy: this one may be refused yet.
            for _ in range(3):
                copy = self._chart_copy(holder) if holder is not None else None
                if holder is None or not (force or copy is None):
                    break
                holder = self._ledger.hold_fingerprint(
                    fingerprint, ref, self._duplicate_window, replacing=holder, in_chart=copy
                )
            if holder is not None and force:
                raise LedgerError("the fingerprint kept changing hands")
        except (LedgerError, ClientError) as exc:
            self._record(ref, claim.token, Status.PENDING_RETRY, "Could not check for an identical document; retried")
            raise RetryLater(f"object {ref.object_id}: fingerprint not checked") from exc
        if holder is None:
            return None
        holder = copy or holder
        reason = (
            f"Identical to {holder.get('key')} (version {holder.get('version_id')}), sent at {holder.get('held_at')}: "
            f"same file, patient and folder within {self._duplicate_window.total_seconds() / 3600:g} h, so not sent "
            "again. To send it anyway: docdrop resolve --resend, or put it again tagged allow_duplicate=true"
        )
        self._record(ref, claim.token, Status.DUPLICATE, reason, duplicate_of=holder.get("object_id"))
        self.logger.info("identical to a document sent lately; not sent", extra={"object_id": ref.object_id})
        return ObjectResult(ref.object_id, Status.DUPLICATE, metrics=(RECEIVED, count(MetricName.DOCUMENTS_DUPLICATE)))

    def _evidence(self, decision: Accepted, digest: str) -> dict[str, str]:
        """What recognises this attempt's document later if its answer is lost (docdrop.reviews): no MRN in clear."""
        evidence = {"sha256": digest}
        if self._fingerprint_key is not None:
            fields = decision.fields
            key = self._fingerprint_key()
            evidence["evidence_fingerprint"] = patient_folder_fingerprint(key, fields.patient_mrn, fields.folder_name)
        return evidence

    def _chart_copy(self, holder: Mapping[str, Any]) -> dict[str, Any] | None:
        """The version a fingerprint's holder says may be in the chart within the window: the holder, unless it was
        certainly never filed; else the copy kept past a take-over sent anyway (`in_chart`); None when neither."""
        if not self._never_filed(holder):
            return {k: holder.get(k) for k in ("bucket", "key", "version_id", "object_id", "held_at")}
        kept = holder.get(IN_CHART)
        if not isinstance(kept, Mapping):
            return None
        since = datetime.now(UTC) - self._duplicate_window
        held_at = parse_moment(kept.get("held_at"))
        if held_at is not None and held_at < since:
            return None  # sent before the window: a new copy is no duplicate
        return self._chart_copy(kept)

    def _never_filed(self, holder: Mapping[str, Any]) -> bool:
        """Whether the version holding a fingerprint certainly did not reach the chart (FAILED or REJECTED)."""
        if not holder.get("bucket") or not holder.get("key") or not holder.get("version_id"):
            return False
        held = self._ledger.get_object(ObjectRef(str(holder["bucket"]), str(holder["key"]), str(holder["version_id"])))
        return (held or {}).get("status") in (Status.FAILED.value, Status.REJECTED.value)
