"""Run by a fresh Python 3.13: import the built webhook handler (with its .pyc), the baseline's imports, or boto3
alone, and print the seconds it took."""

import os
import sys
import time

os.environ.setdefault("LEDGER_TABLE", "bench")
os.environ.setdefault("WEBHOOK_SECRET", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
mode = sys.argv[1]
started = time.perf_counter()
if mode == "handler":
    import app  # type: ignore[import-not-found]  # noqa: F401  (the built handler, on PYTHONPATH)
elif mode == "naive":  # the baseline webhook's imports and clients (bench/baseline/naive_webhook.py), without its
    # secret's fetch at import, which needs the network
    import boto3
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    Logger(service="naive")
    APIGatewayHttpResolver()
    boto3.resource("dynamodb").Table("bench")
    boto3.client("secretsmanager")
else:
    import boto3

    boto3.client("dynamodb")
print(f"{time.perf_counter() - started:.4f}")
