"""The local API Gateway in front of the webhook routes, throttles and logs as the template's API does: a request
without the path token is a 404 that meets no throttle and no function, a route's own requests meet its throttle
(rate and burst from template.yaml), and the access log never holds the token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from local.resources import webhook_stage
from local.webhook_adapter import WebhookAdapter, access_log_line

TOKEN = "t0ken-" + "x" * 40


class Clock:
    """A clock the test moves: the throttle's refill is then exact, whatever the machine's speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _ok(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps({"status": "recorded", "path": event["rawPath"]})}


def _adapter(tmp_path: Path, clock: Clock) -> WebhookAdapter:
    return WebhookAdapter(_ok, token=TOKEN, access_log=tmp_path / "access.log", clock=clock).start()


def test_the_routes_throttle_is_the_templates_burst_then_its_rate_and_a_request_without_the_token_takes_none(
    tmp_path: Path,
) -> None:
    stage = webhook_stage()
    clock = Clock()
    adapter = _adapter(tmp_path, clock)
    base = adapter.url.removesuffix(TOKEN)
    try:
        with requests.Session() as http:
            forged = [http.post(u, data=b"{}").status_code for u in [base.rstrip("/"), base + "guess" * 8] * 150]
            real = [http.post(adapter.url, data=b"{}").status_code for _ in range(stage.burst + 50)]
            clock.now += 1.0  # one second refills `rate` requests
            later = [http.post(adapter.url, data=b"{}").status_code for _ in range(int(stage.rate_per_second) + 10)]
    finally:
        adapter.stop()
    assert forged == [404] * 300
    assert real == [200] * stage.burst + [429] * 50  # the forged 300 took nothing from the burst
    assert later == [200] * int(stage.rate_per_second) + [429] * 10
    assert adapter.invocations == stage.burst + int(stage.rate_per_second)  # a 404 or a 429 meets no function
    assert adapter.statuses == {404: 300, 200: adapter.invocations, 429: 60}


def test_the_previous_tokens_route_answers_until_the_next_deploy_drops_it(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, Clock())
    old_url = adapter.url
    try:
        adapter.deploy("n3w-" + "y" * 40, previous=TOKEN)
        assert adapter.previous_url == old_url and adapter.url != old_url
        both = [requests.post(u, data=b"{}").status_code for u in (adapter.url, old_url)]
        adapter.deploy(adapter.token)
        after = [requests.post(u, data=b"{}").status_code for u in (adapter.url, old_url)]
    finally:
        adapter.stop()
    assert both == [200, 200] and after == [200, 404] and adapter.previous_url is None


def test_a_stack_upgrading_from_before_the_token_keeps_its_old_route_until_the_next_deploy(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, Clock())
    old_url = adapter.url.removesuffix("/" + TOKEN)  # /webhooks/cobalt, as deployed before the token
    try:
        adapter.deploy(TOKEN, previous="none")
        during = [requests.post(u, data=b"{}").status_code for u in (adapter.url, old_url)]
        adapter.deploy(TOKEN)
        after = requests.post(old_url, data=b"{}").status_code
    finally:
        adapter.stop()
    assert adapter.previous_url is None and during == [200, 200] and after == 404


def test_the_access_log_has_a_line_per_request_in_the_templates_format_and_never_the_token(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, Clock())
    try:
        for url in (adapter.url, adapter.url.removesuffix(TOKEN) + "wrong", adapter.url + "?q=1"):
            requests.post(url, data=b'{"patient_mrn": "100001"}')
    finally:
        adapter.stop()
    text = (tmp_path / "access.log").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["status"] for line in lines] == ["200", "404", "200"]
    assert {"requestId", "ip", "method", "latency"} <= set(lines[0])
    assert lines[1]["error"] == "Not Found"
    assert TOKEN not in text and "100001" not in text


def test_the_access_log_renders_every_context_variable_it_is_given_so_a_format_with_the_path_would_show_it() -> None:
    line = access_log_line('{"p":"$context.path","s":"$context.status","u":"$context.unknown"}', {"path": '/a/b"c'})
    assert json.loads(line) == {"p": '/a/b"c', "s": "-", "u": "-"}
