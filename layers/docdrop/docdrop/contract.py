"""The input contract: what a producer sets on an S3 object (tags, then user metadata) to say whose chart and where.

Tags win over metadata; keys match case-insensitively with `_` and `-` alike. Every input is either accepted, waiting
for tags that are still missing, or refused with a reason a clinic administrator understands. Reasons never quote values
(an MRN or a note is PHI).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from email.errors import HeaderParseError
from email.header import decode_header, make_header

MAX_NOTES_CHARS = 1000
REQUIRED = ("patient_mrn", "folder_name")
OPTIONAL = ("emr_assigned_to_id", "is_reviewed", "is_high_priority", "notes")
# Read by DocDrop, never sent to Cobalt: allow_duplicate=true sends a version even when identical to one sent lately.
CONTROLS = ("allow_duplicate", "cobalt_account")  # DocDrop's own: never sent to Cobalt
FIELDS = REQUIRED + OPTIONAL + CONTROLS
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


@dataclasses.dataclass(frozen=True)
class UploadFields:
    """The form fields of Cobalt's POST /v1/documents, validated."""

    patient_mrn: str
    folder_name: str
    emr_assigned_to_id: str | None = None
    is_reviewed: bool | None = None
    is_high_priority: bool | None = None
    notes: str | None = None

    def form(self) -> dict[str, str]:
        """Multipart form fields: booleans as true/false, absent optional fields left out."""
        values = {
            "patient_mrn": self.patient_mrn,
            "folder_name": self.folder_name,
            "emr_assigned_to_id": self.emr_assigned_to_id,
            "is_reviewed": None if self.is_reviewed is None else str(self.is_reviewed).lower(),
            "is_high_priority": None if self.is_high_priority is None else str(self.is_high_priority).lower(),
            "notes": self.notes,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclasses.dataclass(frozen=True)
class Accepted:
    fields: UploadFields
    allow_duplicate: bool = False
    account: str | None = None  # the `cobalt_account` tag (docdrop.accounts routes it)


@dataclasses.dataclass(frozen=True)
class WaitingForTags:
    missing: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "Waiting for tags: " + ", ".join(self.missing) + " (add them as object tags or metadata)"


@dataclasses.dataclass(frozen=True)
class Refused:
    reason: str


ContractResult = Accepted | WaitingForTags | Refused


def normalise_key(key: str) -> str:
    return key.strip().lower().replace("-", "_")


class _Undecodable(Exception):
    """A metadata value written as RFC 2047 encoded-words that do not decode."""


def _decode_metadata(value: str) -> str:
    """S3 metadata is ASCII; clients send other text as RFC 2047 encoded-words (=?UTF-8?B?...?=)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, HeaderParseError) as exc:  # bad base64, unknown charset, bytes not in it
        raise _Undecodable from exc


def _collect(tags: Mapping[str, str], metadata: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """Field values, tags over metadata; or the reason two keys of one source name the same field differently."""
    values: dict[str, str] = {}
    for source, decode in ((tags, False), (metadata, True)):
        seen: dict[str, str] = {}
        for raw_key, raw_value in source.items():
            field = normalise_key(raw_key)
            if field not in FIELDS:
                continue
            try:
                value = _decode_metadata(raw_value) if decode else raw_value
            except _Undecodable:
                return {}, (
                    f"Metadata {field} is RFC 2047 encoded text that does not decode (broken base64 or charset); "
                    "send it again encoded as =?UTF-8?B?<base64 of the UTF-8 text>?="
                )
            if field in seen and seen[field] != value:
                kind = "tags" if source is tags else "metadata"
                return {}, f"Two {kind} name {field} with different values; keep one"
            seen[field] = value
        for field, value in seen.items():
            values.setdefault(field, value)
    return values, None


def _boolean(field: str, value: str | None) -> tuple[bool | None, str | None]:
    if value is None or not value.strip():
        return None, None
    word = value.strip().lower()
    if word in _TRUE:
        return True, None
    if word in _FALSE:
        return False, None
    return None, f"{field} must be true or false (also accepted: yes/no, 1/0)"


def folder_problem(folder: str) -> str | None:
    """Why a folder path is unusable, or None: EMR folders nest with `/`, without empty or relative segments."""
    if folder.startswith("/") or folder.endswith("/"):
        return "folder_name must not start or end with /"
    segments = folder.split("/")
    if any(not s.strip() for s in segments):
        return "folder_name has an empty segment (// or a blank name)"
    if any(s.strip() in (".", "..") for s in segments):
        return "folder_name must not contain . or .. segments"
    if any(ord(c) < 32 or ord(c) == 127 for c in folder):
        return "folder_name contains control characters"
    return None


def read_contract(tags: Mapping[str, str], metadata: Mapping[str, str]) -> ContractResult:
    """Apply the input contract to one object version's tags and user metadata."""
    values, conflict = _collect(tags, metadata)
    if conflict is not None:
        return Refused(conflict)
    present = {k: v.strip() for k, v in values.items()}
    missing = tuple(f for f in REQUIRED if not present.get(f))
    if missing:
        return WaitingForTags(missing)
    folder_reason = folder_problem(present["folder_name"])
    if folder_reason is not None:
        return Refused(folder_reason)
    notes = values.get("notes")
    if notes is not None and len(notes) > MAX_NOTES_CHARS:
        return Refused(f"notes are {len(notes)} characters; Cobalt accepts at most {MAX_NOTES_CHARS}")
    flags: dict[str, bool | None] = {}
    for field in ("is_reviewed", "is_high_priority", "allow_duplicate"):
        flag, problem = _boolean(field, values.get(field))
        if problem is not None:
            return Refused(problem)
        flags[field] = flag
    return Accepted(
        UploadFields(
            patient_mrn=present["patient_mrn"],
            folder_name=present["folder_name"],
            emr_assigned_to_id=present.get("emr_assigned_to_id") or None,
            is_reviewed=flags["is_reviewed"],
            is_high_priority=flags["is_high_priority"],
            notes=notes if notes and notes.strip() else None,
        ),
        allow_duplicate=flags["allow_duplicate"] is True,
        account=present.get("cobalt_account") or None,
    )
