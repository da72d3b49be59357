"""10,000 generated tag and metadata sets through the input contract, seeded: no exception, every set accepted,
waiting for named tags, or refused with a reason, and no reason that quotes a value (an MRN or a note is PHI)."""

from __future__ import annotations

import base64
import random
import string
from collections import Counter

from docdrop.contract import FIELDS, MAX_NOTES_CHARS, Accepted, Refused, WaitingForTags, read_contract

SETS = 10_000
MARK = "Q7Z"  # every generated value holds it, so a reason that quotes one is found


def _key(rng: random.Random) -> str:
    field = rng.choice([*FIELDS, "patient", "mrn", "folder", "", "x-amz-meta-notes"])
    variants = [field, field.upper(), field.replace("_", "-"), f" {field}", field.title()]
    return rng.choice(variants)


def _value(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return ""
    if kind == 1:
        return rng.choice(["true", "false", "yes", "no", "1", "0", "TRUE", "maybe"]) + MARK * (rng.random() < 0.5)
    if kind == 2:
        return MARK + "/".join(rng.choice(["Medical", "", ".", "..", " ", "Labs\x07"]) for _ in range(rng.randrange(4)))
    if kind == 3:
        return MARK + "n" * rng.choice([1, MAX_NOTES_CHARS - 3, MAX_NOTES_CHARS - 2, 5000])
    if kind == 4:  # RFC 2047, well formed or broken
        text = (MARK + "é 🩺").encode()
        encoded = base64.b64encode(text).decode()
        return rng.choice([f"=?UTF-8?B?{encoded}?=", f"=?UTF-8?B?{encoded[:-3]}?=", f"=?bogus?Q?{MARK}?="])
    alphabet = string.printable + "é—🩺\u0000"
    return MARK + "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))


def _source(rng: random.Random) -> dict[str, str]:
    generated = {_key(rng): _value(rng) for _ in range(rng.randrange(8))}
    if rng.random() < 0.4:  # a producer that set the two required tags, and then some
        return {"patient_mrn": f"{MARK}{rng.randrange(10**6)}", "folder_name": "MedicalRecords", **generated}
    return generated


def test_ten_thousand_generated_tag_and_metadata_sets_are_each_accepted_or_refused_with_a_reason() -> None:
    rng = random.Random(20261130)
    seen: Counter[str] = Counter()
    for n in range(SETS):
        tags, metadata = _source(rng), _source(rng)
        result = read_contract(tags, metadata)

        assert isinstance(result, Accepted | WaitingForTags | Refused), n
        seen[type(result).__name__] += 1
        if isinstance(result, Refused):
            assert result.reason.strip(), f"set {n}: refused without a reason"
            assert MARK not in result.reason, f"set {n}: the reason quotes a value"
        elif isinstance(result, WaitingForTags):
            assert result.missing and set(result.missing) <= {"patient_mrn", "folder_name"}, n
        else:
            assert result.fields.patient_mrn.strip() and result.fields.folder_name.strip(), n
            assert result.fields.notes is None or len(result.fields.notes) <= MAX_NOTES_CHARS, n

    assert min(seen.values()) > 300 and set(seen) == {"Accepted", "WaitingForTags", "Refused"}, seen
