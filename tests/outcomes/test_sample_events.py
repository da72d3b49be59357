"""The sample events for the outcome joiner and the reconciler stay what those functions receive and handle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from docdrop.ledger import DocumentLedger, ObjectRef
from docdrop.outcomes import stream_new_image

from local.lambda_runtime import LocalLambdaContext, load_handler_module
from local.resources import outcome_joiner_stream_source
from local.stream_source import matches

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_the_sample_stream_record_passes_the_templates_filter_and_joins_its_object(
    monkeypatch: pytest.MonkeyPatch, ddb: Any, ledger_table: str, dynamodb_endpoint: str
) -> None:
    event = json.loads((EVENTS / "outcome-joiner-stream.json").read_text())
    [record] = event["Records"]
    assert any(matches(p, record) for p in outcome_joiner_stream_source().filter_patterns)
    document = stream_new_image(record)
    assert document is not None
    ref = ObjectRef(document["bucket"], document["key"], document["version_id"])
    assert ref.object_id == document["object_id"]
    ledger = DocumentLedger(ddb, ledger_table)
    claim = ledger.claim(ref, lease_seconds=60)
    ledger.record_submission(ref, claim.token, document["document_id"])

    monkeypatch.setenv("LEDGER_TABLE", ledger_table)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    module = load_handler_module("outcome_joiner")
    answer = module.handler(event, LocalLambdaContext("outcome-joiner", 30))
    assert answer == {"batchItemFailures": []}
    assert ledger.get_object(ref)["status"] == "UPLOADED"


def test_the_sample_schedule_event_runs_one_reconciler_pass(
    monkeypatch: pytest.MonkeyPatch, ledger_table: str, dynamodb_endpoint: str, moto_endpoint: str, sandbox
) -> None:
    import boto3

    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"cobalt-{ledger_table}"
    secrets.create_secret(
        Name=name,
        SecretString=json.dumps(
            {"client_id": "ci_test_docdrop", "client_secret": "cs_test_docdrop", "access_token": "at_test_clinic_main"}
        ),
    )
    for variable, value in {
        "LEDGER_TABLE": ledger_table,
        "COBALT_BASE_URL": sandbox.base_url,
        "COBALT_CREDENTIALS_SECRET": name,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
    }.items():
        monkeypatch.setenv(variable, value)
    module = load_handler_module("reconciler")
    event = json.loads((EVENTS / "reconciler-schedule.json").read_text())
    report = module.handler(event, LocalLambdaContext("reconciler", 100))
    assert report["ran"] and report["complete"] and report["open_objects"]["SUBMITTED"] == 0
