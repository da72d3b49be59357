"""JSON secrets from Secrets Manager: cached per container, re-read on demand, with the version's creation time.

Hand-written rather than Powertools' SecretsProvider: it returns the value only, and the creation time of the version
read is what ends a rotated webhook secret's 24 hours when no expiry was written (docdrop.webhook.signing_secrets).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from typing import Any


class SecretDocument:
    """One JSON secret, cached for `max_age` seconds; `get(refresh=True)` re-reads it (after a rotation), but not
    more often than every `min_refresh` seconds unless `force`: a flood of requests asking for it costs one read."""

    def __init__(self, name: str, max_age: int, secrets_client: Any = None, min_refresh: float = 0.0) -> None:
        self._name = name
        self._max_age = max_age
        self._min_refresh = min_refresh
        self._client = secrets_client
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._read_at = 0.0
        self.version_created_at: datetime | None = None
        self.reads = 0

    def get(self, refresh: bool = False, force: bool = False) -> dict[str, Any]:
        with self._lock:
            age = time.monotonic() - self._read_at
            if self._value is None or age > self._max_age or force or (refresh and age >= self._min_refresh):
                self._value, self.version_created_at = self._read()
                self._read_at = time.monotonic()
                self.reads += 1
            return dict(self._value)

    def key_bytes(self) -> bytes:
        """The `key` field as bytes (the fingerprint key, docdrop.evidence)."""
        return str(self.get()["key"]).encode("utf-8")

    def _read(self) -> tuple[dict[str, Any], datetime | None]:
        if self._client is None:
            import boto3

            self._client = boto3.client("secretsmanager")
        answer = self._client.get_secret_value(SecretId=self._name)
        value = json.loads(answer["SecretString"])
        if not isinstance(value, dict):
            raise ValueError("the secret must hold a JSON object")
        created = answer.get("CreatedDate")
        return value, created if isinstance(created, datetime) else None
