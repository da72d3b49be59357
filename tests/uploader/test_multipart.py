"""The streamed upload body is byte for byte what requests' `files=` would send, with no copy of the file."""

from __future__ import annotations

import requests
from docdrop.multipart import MultipartBody

FIELDS = {"patient_mrn": "12345678", "folder_name": "MedicalRecords/Labs", "notes": 'café "quoted"\r\nline'}
NAME = 'Jane "D" é\r.pdf'


def test_the_streamed_body_is_the_body_requests_would_build() -> None:
    content = bytes(range(256)) * 4100  # over a megabyte, not a multiple of the block
    ours = MultipartBody(FIELDS, "document", NAME, "application/pdf", content)
    prepared = requests.Request(
        "POST",
        "http://cobalt.invalid/v1/documents",
        data=FIELDS,
        files={"document": (NAME, content, "application/pdf")},
    ).prepare()
    boundary = str(prepared.headers["Content-Type"]).split("boundary=")[1]
    streamed = b"".join(ours).replace(ours.boundary.encode(), boundary.encode())
    assert streamed == prepared.body and len(ours) == len(streamed)
    assert ours.content_type == f"multipart/form-data; boundary={ours.boundary}"


def test_the_body_holds_a_view_of_the_file_not_a_copy_and_reads_in_any_block_size() -> None:
    content = b"%PDF-1.4 " + b"x" * 100_000
    body = MultipartBody(FIELDS, "document", NAME, "application/pdf", content)
    assert any(part.obj is content for part in body._parts)
    whole = MultipartBody(FIELDS, "document", NAME, "application/pdf", content)
    pieces = []
    while block := body.read(777):
        pieces.append(block)
    assert b"".join(pieces).replace(body.boundary.encode(), whole.boundary.encode()) == whole.read()
    assert body.read() == b"" and whole.read(10) == b""  # read once: a new body for each request


def test_requests_sends_it_with_a_content_length_not_chunked() -> None:
    body = MultipartBody(FIELDS, "document", NAME, "application/pdf", b"%PDF-1.4 abc")
    prepared = requests.Request("POST", "http://cobalt.invalid/v1/documents", data=body).prepare()
    assert prepared.headers["Content-Length"] == str(len(body)) and "Transfer-Encoding" not in prepared.headers
