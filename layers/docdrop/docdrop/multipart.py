"""The upload's multipart/form-data body, streamed from the bytes the uploader already holds.

Hand-written because requests' `files=` (urllib3's `encode_multipart_formdata`) builds the whole body in memory: a
second copy of the file beside the bytes read from S3, 10 x 5 MiB more at the peak of a batch. This body is the same
bytes urllib3 would build (its own `RequestField` renders the part headers), read in blocks from a view of the file.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping

from urllib3.fields import RequestField

BLOCK = 64 * 1024


class MultipartBody:
    """A file-like multipart body with a known length (requests sends it with a Content-Length, not chunked).

    A new one for each request: reading it consumes it.
    """

    def __init__(
        self, fields: Mapping[str, str], name: str, filename: str, content_type: str, content: bytes | memoryview
    ) -> None:
        self.boundary = secrets.token_hex(16)
        head = bytearray()
        for key, value in fields.items():
            head += self._part_headers(RequestField(name=key, data=value))
            head += value.encode("utf-8") + b"\r\n"
        document = RequestField(name=name, data=b"", filename=filename)
        document.make_multipart(content_type=content_type)
        head += self._part_headers(document)
        self._parts = [
            memoryview(bytes(head)),
            memoryview(content),
            memoryview(f"\r\n--{self.boundary}--\r\n".encode()),
        ]
        self._length = sum(len(part) for part in self._parts)
        self._part = 0
        self._offset = 0

    def _part_headers(self, field: RequestField) -> bytes:
        if field.headers.get("Content-Disposition") is None:
            field.make_multipart()
        return f"--{self.boundary}\r\n".encode("latin-1") + field.render_headers().encode("utf-8")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left for a negative size), copied from the parts in order."""
        wanted = self._length if size is None or size < 0 else size
        chunks: list[bytes] = []
        while wanted > 0 and self._part < len(self._parts):
            part = self._parts[self._part]
            taken = part[self._offset : self._offset + wanted]
            chunks.append(bytes(taken))
            wanted -= len(taken)
            self._offset += len(taken)
            if self._offset >= len(part):
                self._part += 1
                self._offset = 0
        return b"".join(chunks)

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(BLOCK):
            yield block
