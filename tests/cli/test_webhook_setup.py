"""`docdrop register-webhook` and `rotate-webhook-secret` against the local stack and its Cobalt sandbox."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from docdrop_cli import webhook_setup

from tests.cli.conftest import CliStack


def _signing(stack: CliStack) -> dict[str, Any]:
    secrets = stack.client("secretsmanager")
    return dict(json.loads(secrets.get_secret_value(SecretId=stack.info.secrets["webhook_signing"])["SecretString"]))


def test_register_webhook_run_twice_registers_the_stacks_url_once(cli_stack: CliStack) -> None:
    stack = cli_stack
    before = dict(stack.sandbox.webhooks)
    assert list(before.values()) == [stack.info.webhook_url]  # the stack registered itself when it started
    secret = _signing(stack)["current"]

    for _ in range(2):
        run = stack.docdrop("register-webhook", "--json")
        assert run.code == 0, run.err
        assert run.json()["action"] == "unchanged"
    assert stack.sandbox.webhooks == before and _signing(stack)["current"] == secret

    other = "https://hooks.example.test/cobalt"
    first = stack.docdrop("register-webhook", "--url", other, "--json")
    second = stack.docdrop("register-webhook", "--url", other, "--json")
    try:
        assert (first.json()["action"], second.json()["action"]) == ("registered", "unchanged")
        assert sorted(stack.sandbox.webhooks.values()) == sorted([stack.info.webhook_url, other])
    finally:
        for webhook_id, url in list(stack.sandbox.webhooks.items()):
            if url == other:
                stack.sandbox.webhooks.pop(webhook_id)


def test_rotate_webhook_secret_during_steady_webhook_traffic_refuses_no_delivery(
    cli_stack: CliStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = cli_stack
    old = _signing(stack)["current"]
    # The new secret reaches Secrets Manager only once a delivery signed with it has come in: many times the real
    # gap, and still before Cobalt's one retry (1 s after the first answer), which must then pass.
    write = webhook_setup.SecretStore.write

    def slow_final_write(self: webhook_setup.SecretStore, which: str, value: dict[str, Any]) -> None:
        if "previous_expires_at" in value:
            seen = len(stack.sandbox.deliveries)
            stack.put("rotation/in-the-gap.pdf")

            def answered_in_the_gap() -> bool:  # signed with the new secret, before it is stored
                return any(d["result"] in ("503", "401") for d in stack.sandbox.deliveries[seen:])

            stack.wait_for(answered_in_the_gap, 10, "a delivery signed with the secret not stored yet")
        write(self, which, value)

    monkeypatch.setattr(webhook_setup.SecretStore, "write", slow_final_write)
    deliveries_before = len(stack.sandbox.deliveries)
    refs = []
    stop = threading.Event()

    def traffic() -> None:
        n = 0
        while not stop.is_set():
            refs.append(stack.put(f"rotation/steady-{n:03d}.pdf"))
            n += 1
            time.sleep(0.05)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        time.sleep(1.5)
        run = stack.docdrop("rotate-webhook-secret", "--settle", "1.5", "--json")
        time.sleep(1.5)
    finally:
        stop.set()
        sender.join()
    assert run.code == 0, run.err
    assert run.json()["action"] == "rotated"

    stack.wait_for(lambda: all(stack.status_of(r) == "UPLOADED" for r in refs), 90, "the steady traffic")
    deliveries = stack.sandbox.deliveries[deliveries_before:]
    results = [d["result"] for d in deliveries if d["type"].startswith("document.")]
    assert "401" not in results  # no delivery refused
    assert "503" in results  # the window was hit: those deliveries passed on Cobalt's retry
    document = _signing(stack)
    assert document["previous"] == old and document["current"] not in (old, "")
    assert "rotation_started_at" not in document and document["previous_expires_at"]


def test_rotate_without_a_registered_webhook_says_to_register_first(cli_stack: CliStack) -> None:
    run = cli_stack.docdrop("rotate-webhook-secret", "--url", "https://not-registered.example.test/hook")
    assert run.code == 4
    assert "is not registered with Cobalt: run docdrop register-webhook first" in run.err
    assert "rotation_started_at" not in _signing(cli_stack)


def test_a_deployed_stack_is_read_from_its_outputs_and_register_webhook_uses_its_cobalt_base_url(
    cli_stack: CliStack,
) -> None:
    """`--stack NAME`: names, the webhook URL and Cobalt's base URL from a CloudFormation stack's outputs (moto's)."""
    import io

    import docdrop_cli.main as cli
    import yaml
    from docdrop_cli.target import STACK_OUTPUTS

    info = cli_stack.info
    values = {
        "LedgerTableName": info.table,
        "InboxBucketName": info.bucket,
        "WatchedPrefix": info.prefix,
        "CobaltBaseUrl": info.cobalt_base_url,
        "CobaltCredentialsSecretArn": info.secrets["cobalt_credentials"],
        "WebhookSigningSecretArn": info.secrets["webhook_signing"],
        "ReconcilerFunctionName": info.functions["reconciler"],
        "IngestQueueUrl": info.queue_url,
        "DeadLetterQueueUrl": info.dlq_url,
        "WebhookUrl": info.webhook_url,
        "PreviousWebhookUrl": "",  # only while the path token changes
        "AlarmTopicArn": "",
    }
    assert set(values) == set(STACK_OUTPUTS)
    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {name: {"Value": value} for name, value in values.items() if value},
    }
    cloudformation = cli_stack.client("cloudformation")
    cloudformation.create_stack(StackName="docdrop-deployed", TemplateBody=yaml.safe_dump(template))
    before = dict(cli_stack.sandbox.webhooks)

    out = io.StringIO()
    assert cli.main(["register-webhook", "--stack", "docdrop-deployed", "--json"], out=out) == 0
    assert json.loads(out.getvalue())["action"] == "unchanged"  # found at the stack's Cobalt, under its WebhookUrl
    assert cli_stack.sandbox.webhooks == before
    out = io.StringIO()
    assert cli.main(["status", "--stack", "docdrop-deployed", "--json", "--limit", "3"], out=out) == 0
    assert isinstance(json.loads(out.getvalue()), list)
