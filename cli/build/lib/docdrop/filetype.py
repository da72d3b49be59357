"""What a file is, from its first bytes: the only types Cobalt accepts are PDF, JPEG and PNG, up to 5 MB."""

from __future__ import annotations

MAX_DOCUMENT_BYTES = 5 * 1024 * 1024

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)
EXTENSIONS = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}
SNIFF_BYTES = 1024


def sniff_content_type(head: bytes) -> str | None:
    """The MIME type of a PDF, JPEG or PNG from its leading bytes; None for anything else.

    A PDF header may follow a little leading junk (the PDF spec admits it within the first 1024 bytes).
    """
    for magic, content_type in _SIGNATURES:
        if head.startswith(magic):
            return content_type
    if b"%PDF-" in head[:SNIFF_BYTES]:
        return "application/pdf"
    return None
