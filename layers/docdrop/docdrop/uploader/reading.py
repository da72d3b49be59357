"""Reading one object version from S3: its tags, metadata and body (read only once accepted), and why its bytes cannot
be sent."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from docdrop.filetype import MAX_DOCUMENT_BYTES
from docdrop.ledger import ObjectRef
from docdrop.s3_events import ObjectEvent
from docdrop.uploader.base import UploaderBase
from docdrop.uploader.results import UNVERSIONED

_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
_DENIED = frozenset({"AccessDenied", "403", "Forbidden"})


@dataclasses.dataclass
class OpenedObject:
    ref: ObjectRef
    tags: dict[str, str]
    metadata: dict[str, str]
    content_length: int
    body: Any


class ObjectGone(Exception):
    """The object version no longer exists (deleted between the event and the read)."""


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


@contextmanager
def closing_body(body: Any) -> Iterator[None]:
    try:
        yield
    finally:
        close = getattr(body, "close", None)
        if callable(close):
            close()


class ObjectReading(UploaderBase):
    """Reads the event's object version (two S3 calls) and judges its size and bytes."""

    def _open(self, event: ObjectEvent) -> OpenedObject:
        """Tags and metadata of the event's version, and its body as a stream (read only if the object is accepted).

        Two S3 calls. Without a version in the event, GetObject comes first and names the version it returned.
        """
        version = event.version_id if event.version_id and event.version_id != "null" else None
        try:
            if version is not None:
                tagging = self._s3.get_object_tagging(Bucket=event.bucket, Key=event.key, VersionId=version)
                got = self._s3.get_object(Bucket=event.bucket, Key=event.key, VersionId=version)
            else:
                got = self._s3.get_object(Bucket=event.bucket, Key=event.key)
                version = got.get("VersionId") if got.get("VersionId") not in (None, "null") else None
                kwargs = {"VersionId": version} if version else {}
                tagging = self._s3.get_object_tagging(Bucket=event.bucket, Key=event.key, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in _MISSING:
                raise ObjectGone from None
            # Without s3:ListBucket, S3 answers 403 for a version that no longer exists: ask the version list.
            if code in _DENIED and not self._still_exists(event.bucket, event.key, version):
                raise ObjectGone from None
            raise
        # No version from S3 either: the bucket's versioning is off or suspended. One record per key says so.
        identity = event.identity or version or UNVERSIONED
        return OpenedObject(
            ref=ObjectRef(event.bucket, event.key, identity),
            tags={t["Key"]: t["Value"] for t in tagging.get("TagSet", [])},
            metadata=dict(got.get("Metadata") or {}),
            content_length=int(got.get("ContentLength") or 0),
            body=got["Body"],
        )

    def _still_exists(self, bucket: str, key: str, version: str | None) -> bool:
        """Whether the key (or this version of it) is still in the bucket, by ListObjectVersions on the key itself."""
        pages = self._s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
        for page in pages:
            for entry in page.get("Versions", []):
                if entry.get("Key") == key and (
                    entry.get("VersionId") == version or (version is None and entry.get("IsLatest"))
                ):
                    return True
        return False

    @staticmethod
    def _too_big(size: int) -> str:
        return f"File is {megabytes(size)}; Cobalt accepts at most {megabytes(MAX_DOCUMENT_BYTES)}"

    def _content_problem(self, content: bytes) -> str:
        """Why the bytes cannot be sent (called once the size or the sniffed type ruled them out)."""
        if not content:
            return "File is empty"
        if len(content) > MAX_DOCUMENT_BYTES:
            return self._too_big(len(content))
        return "File is not a PDF, JPEG or PNG (judged by its content, not its name)"
