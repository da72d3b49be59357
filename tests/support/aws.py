"""boto3 clients for the local servers the tests start (never a real AWS account)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import boto3
from botocore.config import Config

from local.resources import create_ledger_table as create_table_from_template

LOCAL_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def use_local_credentials() -> None:
    for name, value in LOCAL_ENV.items():
        os.environ[name] = value
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)


def dynamodb_client(endpoint: str, **config: Any) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


def create_ledger_table(client: Any, name: str | None = None) -> str:
    """A ledger table created from template.yaml's own LedgerTable definition."""
    return create_table_from_template(client, name or f"ledger-{uuid.uuid4().hex[:8]}")
