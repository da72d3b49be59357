"""The webhook's path token (#26): a forged flood without it meets API Gateway's 404, so Cobalt's real deliveries keep
their route's throttle to themselves; `docdrop rotate-webhook-path` moves Cobalt to a new token without losing one."""

from __future__ import annotations

import secrets

import requests
from docdrop.ledger import ObjectRef

from local.flood import Flood
from local.resources import webhook_stage
from tests.cli.conftest import CliStack


def _deliveries_since(stack: CliStack, start: int) -> list[dict[str, object]]:
    return [dict(d) for d in stack.sandbox.deliveries[start:]]


def test_a_forged_flood_at_twice_the_throttle_refuses_no_real_delivery(cli_stack: CliStack) -> None:
    stack = cli_stack
    stage = webhook_stage()
    prefix = stack.info.webhook_url.removesuffix(stack.stack.webhook_adapter.token)
    guesses = [prefix.rstrip("/"), prefix + secrets.token_urlsafe(32), prefix + "x" * 43]  # the old path, guesses
    first_delivery = len(stack.sandbox.deliveries)
    invocations = stack.stack.webhook_adapter.invocations

    with Flood(guesses, rate=2 * stage.rate_per_second) as flood:
        refs: list[ObjectRef] = [stack.put(f"flood/{i}.pdf") for i in range(12)]
        for ref in refs:
            stack.wait_status(ref, "UPLOADED")
        stack.wait_for(lambda: flood.sent >= 2 * stage.burst, what="the flood")  # the route's burst, spent twice
    deliveries = _deliveries_since(stack, first_delivery)

    # Refused: what a flood at the throttle causes (429, or any 4xx). A 5xx or a timeout on a starved machine is
    # retried by Cobalt, and each document's outcome still came by webhook (all UPLOADED; no reconciler pass ran).
    refused = [d for d in deliveries if str(d["result"]).startswith("4")]
    print(
        f"\nforged flood: {flood.sent} requests at {flood.achieved_rate:.0f}/s (throttle "
        f"{stage.rate_per_second:.0f}/s, burst {stage.burst}); "
        f"real deliveries {len(deliveries)}, refused {len(refused)}"
    )
    assert set(flood.answers) == {"404"}  # every forged request stopped before any route, throttle or function
    assert len(deliveries) >= len(refs) and refused == []
    assert all(stack.status_of(ref) == "UPLOADED" for ref in refs)
    assert stack.stack.webhook_adapter.invocations - invocations == len(deliveries)  # only Cobalt's met the function


def test_rotate_webhook_path_moves_cobalt_to_the_new_token_only_once_its_route_takes_a_signed_delivery(
    cli_stack: CliStack,
) -> None:
    stack = cli_stack
    adapter = stack.stack.webhook_adapter
    old_token, old_url = adapter.token, stack.info.webhook_url
    assert list(stack.sandbox.webhooks.values()) == [old_url]

    alone = stack.docdrop("rotate-webhook-path", "--json")  # one token deployed: nothing to move to
    assert alone.code == 2 and "WebhookPreviousPathToken" in alone.err

    new_token = secrets.token_urlsafe(32)
    stack.info = stack.stack.deploy_webhook_path(new_token, previous=old_token)
    adapter.deploy(old_token)  # ...but the new route is not live yet (a deploy that did not finish)
    failed = stack.docdrop("rotate-webhook-path", "--json")
    assert failed.code == 1 and "HTTP 404" in failed.err
    assert old_url in stack.sandbox.webhooks.values()  # the old URL stays registered: no delivery is lost

    adapter.deploy(new_token, previous=old_token)  # the deploy finishes: both routes answer
    moved = stack.docdrop("rotate-webhook-path", "--json")
    assert moved.code == 0, moved.err
    assert moved.json()["action"] == "moved"
    assert list(stack.sandbox.webhooks.values()) == [stack.info.webhook_url]
    assert stack.info.webhook_url.endswith("/" + new_token) and stack.info.previous_webhook_url == old_url

    start = len(stack.sandbox.deliveries)
    ref = stack.put("rotated/after.pdf")
    stack.wait_status(ref, "UPLOADED")
    assert {(d["url"], d["result"]) for d in _deliveries_since(stack, start)} == {(stack.info.webhook_url, "200")}

    stack.info = stack.stack.deploy_webhook_path(new_token)  # the second deploy: the old route is gone
    assert stack.info.previous_webhook_url == ""
    assert requests.post(old_url, data=b"{}", timeout=5).status_code == 404
    again = stack.docdrop("rotate-webhook-path", "--json")
    assert again.code == 2  # nothing left to move
