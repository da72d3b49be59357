"""Keyed fingerprints: evidence that recognises a patient and folder (and a file) without holding the MRN (promise 5).

Each is an HMAC-SHA256 keyed with the stack's own `FingerprintKeySecret`, so a fingerprint in the ledger cannot be
turned back into an MRN by anyone who lacks the key. Two kinds, with separate domains so one can never equal the other:
- `patient_folder_fingerprint`: links an ambiguous attempt (NEEDS_REVIEW) to the outcome Cobalt later reported;
- `document_fingerprint`: the same file for the same patient and folder (DUPLICATE).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any


def _keyed(key: bytes, domain: str, *parts: str) -> str:
    material = "\0".join((domain, *parts)).encode("utf-8", "surrogatepass")
    return hmac.new(key, material, hashlib.sha256).hexdigest()


def patient_folder_fingerprint(key: bytes, patient_mrn: str, folder_name: str) -> str:
    return _keyed(key, "patient-folder", patient_mrn.strip(), folder_name.strip())


def outcome_fingerprint(key: bytes, data: Any) -> str | None:
    """The patient/folder fingerprint of a Cobalt outcome's `data` (webhook or event log); None without both."""
    if not isinstance(data, Mapping):
        return None
    mrn, folder = data.get("patient_mrn"), data.get("folder_name")
    if not isinstance(mrn, str | int) or not isinstance(folder, str):
        return None
    return patient_folder_fingerprint(key, str(mrn), folder)


def document_fingerprint(key: bytes, patient_mrn: str, folder_name: str, sha256_hex: str) -> str:
    return _keyed(key, "document", patient_mrn.strip(), folder_name.strip(), sha256_hex)
