"""The input contract (ARCHITECTURE.md): tags win over metadata, keys loosely matched, every input decided."""

from __future__ import annotations

import base64

import pytest
from docdrop.contract import (
    FIELDS,
    MAX_NOTES_CHARS,
    Accepted,
    Refused,
    UploadFields,
    WaitingForTags,
    read_contract,
)
from hypothesis import given, settings
from hypothesis import strategies as st

BASE = {"patient_mrn": "100001", "folder_name": "MedicalRecords/LabResults"}


def accepted(tags: dict[str, str], metadata: dict[str, str] | None = None) -> UploadFields:
    result = read_contract(tags, metadata or {})
    assert isinstance(result, Accepted), result
    return result.fields


def test_every_field_from_tags_becomes_a_form_field() -> None:
    fields = accepted(
        {**BASE, "emr_assigned_to_id": "staff-001", "is_reviewed": "yes", "is_high_priority": "0", "notes": "Lab"}
    )
    assert fields.form() == {
        "patient_mrn": "100001",
        "folder_name": "MedicalRecords/LabResults",
        "emr_assigned_to_id": "staff-001",
        "is_reviewed": "true",
        "is_high_priority": "false",
        "notes": "Lab",
    }


@pytest.mark.parametrize("key", ["Patient-MRN", "PATIENT_MRN", " patient-mrn ", "patient_Mrn"])
def test_keys_match_case_insensitively_with_dash_and_underscore_alike(key: str) -> None:
    assert accepted({key: "100001", "Folder-Name": "A"}).patient_mrn == "100001"


def test_tags_win_over_metadata_and_metadata_fills_the_rest() -> None:
    fields = accepted(
        {"patient_mrn": "from-tag", "folder_name": "A"}, {"patient-mrn": "from-meta", "notes": "long note"}
    )
    assert fields.patient_mrn == "from-tag" and fields.notes == "long note"


def test_metadata_alone_is_enough_and_rfc2047_text_is_decoded() -> None:
    fields = accepted({}, {"patient_mrn": "100001", "folder_name": "A", "notes": "=?UTF-8?B?Q2Fmw6kgdmlzaXQ=?="})
    assert fields.notes == "Café visit"


@pytest.mark.parametrize(
    ("tags", "missing"),
    [
        ({}, ("patient_mrn", "folder_name")),
        ({"folder_name": "A"}, ("patient_mrn",)),
        ({"patient_mrn": " "}, ("patient_mrn", "folder_name")),
    ],
)
def test_missing_mrn_or_folder_waits_for_tags_naming_what_is_missing(tags, missing) -> None:
    result = read_contract(tags, {})
    assert result == WaitingForTags(missing)
    assert all(name in result.reason for name in missing)


@pytest.mark.parametrize(
    ("folder", "reason"),
    [
        ("/A", "start or end"),
        ("A/", "start or end"),
        ("A//B", "empty segment"),
        ("A/ /B", "empty segment"),
        ("A/../B", ". or .."),
        ("./A", ". or .."),
        ("A\nB", "control"),
    ],
)
def test_bad_folder_paths_are_refused(folder: str, reason: str) -> None:
    result = read_contract({**BASE, "folder_name": folder}, {})
    assert isinstance(result, Refused) and reason in result.reason


def test_notes_over_1000_characters_are_refused_at_1000_accepted() -> None:
    assert accepted(BASE, {"notes": "n" * MAX_NOTES_CHARS}).notes == "n" * MAX_NOTES_CHARS
    result = read_contract(BASE, {"notes": "n" * (MAX_NOTES_CHARS + 1)})
    assert isinstance(result, Refused) and "1001 characters" in result.reason


@pytest.mark.parametrize("value", ["maybe", "2", "tru", "on"])
def test_malformed_booleans_are_refused(value: str) -> None:
    result = read_contract({**BASE, "is_reviewed": value}, {})
    assert result == Refused("is_reviewed must be true or false (also accepted: yes/no, 1/0)")


def test_two_spellings_of_one_field_with_different_values_are_refused() -> None:
    result = read_contract({**BASE, "patient-mrn": "other"}, {})
    assert isinstance(result, Refused) and "patient_mrn" in result.reason


@pytest.mark.parametrize(
    "notes", ["=?UTF-8?B?Q===?=", "=?utf-8?q?caf=C3?=", "=?x-unknown?B?Q2Fmw6k=?=", "=?UTF-8?B?Q2Fm?= =?UTF-8?B?Q===?="]
)
def test_metadata_encoded_words_that_do_not_decode_are_refused_with_a_reason(notes: str) -> None:
    result = read_contract({}, {"patient_mrn": "100001", "folder_name": "A", "notes": notes})
    assert isinstance(result, Refused) and result.reason.startswith("Metadata notes is RFC 2047 encoded text")


def test_refusal_reasons_never_quote_the_mrn_or_notes() -> None:
    secret = "MRN-SECRET-77"
    for tags, metadata in (
        ({"patient_mrn": secret, "folder_name": "A//B"}, {}),
        ({"patient_mrn": secret, "folder_name": "A", "is_reviewed": secret}, {}),
        ({"patient_mrn": secret, "folder_name": "A"}, {"notes": secret * 100}),
    ):
        result = read_contract(tags, metadata)
        assert isinstance(result, Refused) and secret not in result.reason


keys = st.sampled_from([*FIELDS, "PATIENT-MRN", "Folder-Name", "Is-Reviewed", "other", "x-amz-meta-notes"]) | st.text(
    max_size=20
)


def _encoded_word(charset: str, encoding: str, payload: str) -> str:
    return f"=?{charset}?{encoding}?{payload}?="


# RFC 2047 encoded-words as clients send non-ASCII metadata: valid ones, and broken base64, quoted-printable, charsets.
encoded_words = st.builds(
    lambda text, charset: _encoded_word(charset, "B", base64.b64encode(text.encode("utf-8")).decode()),
    st.text(max_size=60),
    st.sampled_from(["UTF-8", "utf-8"]),
) | st.builds(
    _encoded_word,
    st.sampled_from(["UTF-8", "utf-8", "iso-8859-1", "x-unknown", "utf-16"]),
    st.sampled_from(["B", "b", "Q", "q"]),
    st.text(alphabet="ABCDEFabcdef0123456789+/=_?-%!", max_size=30),
)
values = (
    st.sampled_from(["", " ", "true", "No", "1", "A/B", "../x", "/", "100001"])
    | st.text(max_size=1100)
    | encoded_words
    | st.lists(encoded_words, min_size=1, max_size=3).map(" ".join)
)


@settings(max_examples=1500, deadline=None)
@given(tags=st.dictionaries(keys, values, max_size=10), metadata=st.dictionaries(keys, values, max_size=10))
def test_every_tag_and_metadata_set_is_accepted_waits_or_is_refused_with_a_reason(
    tags: dict[str, str], metadata: dict[str, str]
) -> None:
    result = read_contract(tags, metadata)
    if isinstance(result, Accepted):
        form = result.fields.form()
        assert form["patient_mrn"].strip() and form["folder_name"].strip()
        assert len(form.get("notes", "")) <= MAX_NOTES_CHARS
        assert form.get("is_reviewed", "true") in ("true", "false")
    elif isinstance(result, WaitingForTags):
        assert result.missing and result.reason
    else:
        assert isinstance(result, Refused) and result.reason
