"""Run by a fresh Python 3.13: import the built webhook handler (with its .pyc) and print the seconds it took."""

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
else:
    import boto3

    boto3.client("dynamodb")
print(f"{time.perf_counter() - started:.4f}")
