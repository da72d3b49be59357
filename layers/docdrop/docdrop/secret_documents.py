"""JSON secrets from Secrets Manager through Powertools Parameters: cached per container, re-read on demand."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider


class SecretDocument:
    """One JSON secret, cached for `max_age` seconds; `get(refresh=True)` re-reads it (after a rotation)."""

    def __init__(self, name: str, max_age: int, secrets_client: Any = None) -> None:
        self._name = name
        self._max_age = max_age
        self._provider = SecretsProvider(boto3_client=secrets_client) if secrets_client else SecretsProvider()

    def get(self, refresh: bool = False) -> dict[str, Any]:
        value = self._provider.get(self._name, transform="json", max_age=self._max_age, force_fetch=refresh)
        if not isinstance(value, dict):
            raise ValueError("the secret must hold a JSON object")
        return value
