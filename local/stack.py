"""The whole pipeline on one machine, no AWS account, no Docker.

moto server (S3, SQS, Secrets Manager, CloudWatch), the real DynamoDB Local engine (moto's DynamoDB only as a loud
fallback), the Cobalt sandbox or any Cobalt-compatible server, the uploader driven as the SQS event source mapping
would drive it, and the webhook handler behind the local HTTP adapter. Resources come from template.yaml's own
definitions; the webhook is registered with Cobalt (POST /v1/webhook) and its secret stored in Secrets Manager, as in
production. Everything listens on 127.0.0.1 and stops on exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from docdrop.cobalt import CobaltClient

from local.cobalt_sandbox import CobaltSandbox, FaultSettings, SandboxConfig
from local.dynamodb_local import DynamoDBLocalUnavailable, free_port, running_dynamodb_local
from local.event_source import SqsEventSource
from local.lambda_api import LocalLambdaApi
from local.lambda_runtime import LocalLambdaContext, load_handler_module
from local.resources import (
    IngestQueues,
    create_fingerprint_key,
    create_inbox_bucket,
    create_ingest_queues,
    create_ledger_table,
    outcome_joiner_stream_source,
    reconciler_schedule,
    uploader_event_source,
    uploader_retry_environment,
)
from local.stream_source import DynamoDBStreamSource
from local.template import load_template
from local.webhook_adapter import WebhookAdapter

log = logging.getLogger("docdrop.local")
STATE_DIR = Path(".docdrop")
REGION = "us-east-1"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# The sandbox's seeded client and access token (local/cobalt_sandbox/seed.json); for another server, set these.
SANDBOX_CREDENTIALS = {
    "client_id": "ci_test_docdrop",
    "client_secret": "cs_test_docdrop",
    "access_token": "at_test_clinic_main",
}
# With the sandbox the stack serves two practices (docdrop.accounts): objects under north/ go to the account "north",
# the rest to "main".
SANDBOX_ACCOUNTS = {
    "client_id": SANDBOX_CREDENTIALS["client_id"],
    "client_secret": SANDBOX_CREDENTIALS["client_secret"],
    "accounts": {
        "main": {"access_token": "at_test_clinic_main", "reference_id": "clinic-main"},
        "north": {"access_token": "at_test_clinic_north", "reference_id": "clinic-north"},
    },
}
SANDBOX_ACCOUNT_PREFIXES = "north/=north,*=main"


@dataclasses.dataclass
class StackOptions:
    state_dir: Path = STATE_DIR
    cobalt_url: str | None = None  # an external Cobalt-compatible base URL, e.g. https://api.usecobalt.com/v1
    prefix: str = "inbox/"
    processing_delay_seconds: float = 1.0  # the sandbox's "EMR robot" time before an outcome
    faults: FaultSettings | None = None
    batching_window_seconds: float | None = None  # None: the template's
    visibility_timeout_seconds: int | None = None  # None: the queue's (from the template)
    # The reconciler's schedule and deadlines in seconds; None: the template's parameter defaults.
    reconcile_every_seconds: float | None = None
    outcome_grace_seconds: float | None = None
    stale_after_seconds: float | None = None
    tag_wait_seconds: float | None = None
    # Divides the retry schedule's delays (and the reconciler's retry horizon): 60 turns an hour of waiting for Cobalt
    # into a minute.
    time_scale: float = 1.0
    # How often the webhook may re-read its signing secret on a mismatch (the template's 60 s; tests shorten it).
    secret_reread_seconds: float = 60.0


@dataclasses.dataclass(frozen=True)
class StackInfo:
    aws_endpoint_url: str
    dynamodb_endpoint_url: str
    dynamodb_engine: str
    region: str
    bucket: str
    prefix: str
    queue_url: str
    dlq_url: str
    table: str
    webhook_url: str
    cobalt_base_url: str
    cobalt_sandbox: bool
    secrets: dict[str, str]
    logs: dict[str, str]
    reconciler: dict[str, float]  # every_seconds and the deadlines in force, in seconds
    # What the functions are configured with (names and local endpoints; no secret values).
    function_environment: dict[str, str]
    # Lambda's Invoke API for the stack's functions (`docdrop reconcile` invokes the reconciler through it).
    lambda_endpoint_url: str
    functions: dict[str, str]
    pid: int  # the process the stack lives in: docdrop tells a stale file by it

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def cobalt_credentials_from_env() -> dict[str, str]:
    """Credentials for another Cobalt-compatible server: COBALT_CLIENT_ID, COBALT_CLIENT_SECRET, COBALT_ACCESS_TOKEN."""
    values = {k: os.environ.get(f"COBALT_{k.upper()}", "") for k in SANDBOX_CREDENTIALS}
    return values if all(values.values()) else dict(SANDBOX_CREDENTIALS)


class LocalStack:
    """Start with `start()` (or `with LocalStack(...) as stack:`); `stop()` stops everything it started."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self._exit = contextlib.ExitStack()
        self._saved_env: dict[str, str | None] = {}
        self._stop = threading.Event()
        self.info: StackInfo | None = None
        self.sandbox: CobaltSandbox | None = None
        self.queues: IngestQueues | None = None
        self.uploader: ModuleType | None = None
        self.webhook: ModuleType | None = None
        self.event_source: SqsEventSource | None = None
        self.outcome_joiner: ModuleType | None = None
        self.stream_source: DynamoDBStreamSource | None = None
        self.reconciler: ModuleType | None = None
        self._reconciler_lock = threading.Lock()
        self._reconciler_timeout = 120.0

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- start ------------------------------------------------------------------------------------------------------
    def start(self) -> StackInfo:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> StackInfo:
        options = self.options
        options.state_dir.mkdir(parents=True, exist_ok=True)
        name = f"docdrop-local-{uuid.uuid4().hex[:6]}"
        self._set_env({**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})
        for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            self._set_env({variable: None})

        moto_url = self._start_moto()
        dynamodb_url, engine = self._start_dynamodb(moto_url)
        self._set_env({"AWS_ENDPOINT_URL": moto_url, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url})

        template = load_template()
        s3 = boto3.client("s3", endpoint_url=moto_url, region_name=REGION)
        sqs = boto3.client("sqs", endpoint_url=moto_url, region_name=REGION)
        secrets = boto3.client("secretsmanager", endpoint_url=moto_url, region_name=REGION)
        dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_url, region_name=REGION)
        self.queues = create_ingest_queues(sqs, name, template)
        bucket = f"{name}-inbox"
        create_inbox_bucket(s3, bucket, options.prefix, self.queues.queue_arn, template)
        table = create_ledger_table(dynamodb, f"{name}-ledger", template)

        cobalt_url, credentials = self._start_cobalt()
        credentials_secret, signing_secret = f"{name}/cobalt-credentials", f"{name}/webhook-signing"
        secrets.create_secret(Name=credentials_secret, SecretString=json.dumps(credentials))
        secrets.create_secret(Name=signing_secret, SecretString=json.dumps({"current": "REPLACE_ME", "previous": ""}))
        fingerprint_secret = create_fingerprint_key(secrets, f"{name}/fingerprint-key")

        logs_dir = options.state_dir / "logs"
        logs_dir.mkdir(exist_ok=True)
        schedule = reconciler_schedule(template)
        deadlines = {
            "every_seconds": options.reconcile_every_seconds or schedule.every_seconds,
            "outcome_grace_seconds": options.outcome_grace_seconds or schedule.outcome_grace_seconds,
            "stale_after_seconds": options.stale_after_seconds or schedule.stale_after_seconds,
            "tag_wait_seconds": options.tag_wait_seconds or schedule.tag_wait_seconds,
        }
        self._reconciler_timeout = schedule.function_timeout_seconds
        self._set_env(
            {
                "OUTCOME_GRACE_MINUTES": repr(deadlines["outcome_grace_seconds"] / 60),
                "STALE_AFTER_HOURS": repr(deadlines["stale_after_seconds"] / 3600),
                "TAG_WAIT_HOURS": repr(deadlines["tag_wait_seconds"] / 3600),
                "RETRY_HORIZON_MINUTES": repr(
                    float(schedule.environment["RETRY_HORIZON_MINUTES"]) / options.time_scale
                ),
                "DEAD_LETTER_QUEUE_ARN": self.queues.dlq_arn,
            }
        )
        self._set_env(
            {
                "LEDGER_TABLE": table,
                "RECORD_RETENTION_DAYS": "0",
                "POWERTOOLS_METRICS_NAMESPACE": "DocDrop",
                # EMF goes to stdout in Lambda, where CloudWatch reads it; locally it would drown the demo's output.
                "POWERTOOLS_METRICS_DISABLED": "true",
                "WEBHOOK_SECRET": signing_secret,
                "WEBHOOK_SECRET_REREAD_SECONDS": repr(options.secret_reread_seconds),
                "COBALT_BASE_URL": cobalt_url,
                "COBALT_CREDENTIALS_SECRET": credentials_secret,
                "FINGERPRINT_KEY_SECRET": fingerprint_secret,
                "WATCHED_PREFIX": options.prefix,
                **uploader_retry_environment(self.queues, options.time_scale, template),
            }
        )
        self.webhook = load_handler_module("webhook")
        self._log_to_file(self.webhook, logs_dir / "webhook.log")
        adapter = WebhookAdapter(_metrics_off(self.webhook)).start()
        self._exit.callback(adapter.stop)

        # The same set-up step as production: register the URL with Cobalt, keep the secret it answers with.
        cobalt = CobaltClient(cobalt_url, lambda refresh: credentials)
        registration = cobalt.register_webhook(adapter.url)
        if registration.webhook_id:  # a URL that dies with this stack must not stay registered with Cobalt
            self._exit.callback(cobalt.delete_webhook, registration.webhook_id)
        secrets.put_secret_value(
            SecretId=signing_secret, SecretString=json.dumps({"current": registration.secret, "previous": ""})
        )

        self.uploader = load_handler_module("uploader")
        self._log_to_file(self.uploader, logs_dir / "uploader.log")
        self._exit.callback(self.uploader.executor.shutdown, wait=False)
        settings = uploader_event_source(template)
        if options.batching_window_seconds is not None:
            settings = dataclasses.replace(settings, batching_window_seconds=options.batching_window_seconds)
        self.event_source = SqsEventSource(
            sqs,
            self.queues.queue_url,
            self.queues.queue_arn,
            _metrics_off(self.uploader),
            settings,
            visibility_timeout=options.visibility_timeout_seconds,
        )
        poller = threading.Thread(
            target=self.event_source.run, args=(self._stop,), name="sqs-event-source", daemon=True
        )
        poller.start()
        self._exit.callback(poller.join, 10)
        self._exit.callback(self._stop.set)

        # The outcome joiner on the ledger's stream, as the template's DynamoDB event drives it.
        self.outcome_joiner = load_handler_module("outcome_joiner")
        self._log_to_file(self.outcome_joiner, logs_dir / "outcome-joiner.log")
        streams = boto3.client("dynamodbstreams", endpoint_url=dynamodb_url, region_name=REGION)
        stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.stream_source = DynamoDBStreamSource(
            streams, stream_arn, _metrics_off(self.outcome_joiner), outcome_joiner_stream_source(template)
        )
        self._start_thread("ledger-stream", self.stream_source.run)

        # The reconciler on its schedule (the local stack's EventBridge Scheduler).
        self.reconciler = load_handler_module("reconciler")
        self._log_to_file(self.reconciler, logs_dir / "reconciler.log")
        self._start_thread("reconciler-schedule", self._reconcile_on_schedule, deadlines["every_seconds"])
        reconciler_name = f"{name}-reconciler"
        lambda_api = LocalLambdaApi({reconciler_name: lambda event: self.reconcile_now()}).start()
        self._exit.callback(lambda_api.stop)

        self.info = StackInfo(
            aws_endpoint_url=moto_url,
            dynamodb_endpoint_url=dynamodb_url,
            dynamodb_engine=engine,
            region=REGION,
            bucket=bucket,
            prefix=options.prefix,
            queue_url=self.queues.queue_url,
            dlq_url=self.queues.dlq_url,
            table=table,
            webhook_url=adapter.url,
            cobalt_base_url=cobalt_url,
            cobalt_sandbox=self.sandbox is not None,
            secrets={"cobalt_credentials": credentials_secret, "webhook_signing": signing_secret},
            logs={
                name: str(logs_dir / f"{name}.log") for name in ("uploader", "webhook", "outcome-joiner", "reconciler")
            },
            reconciler=deadlines,
            function_environment={k: os.environ[k] for k in sorted(self._saved_env) if k in os.environ},
            lambda_endpoint_url=lambda_api.url,
            functions={"reconciler": reconciler_name},
            pid=os.getpid(),
        )
        state_file = options.state_dir / "local-stack.json"
        state_file.write_text(self.info.to_json() + "\n", encoding="utf-8")
        self._exit.callback(state_file.unlink, missing_ok=True)
        return self.info

    def _start_thread(self, name: str, target: Callable[..., None], *args: object) -> None:
        """A daemon thread that runs `target(stop_event, *args)` and is joined when the stack stops."""
        thread = threading.Thread(target=target, args=(self._stop, *args), name=name, daemon=True)
        thread.start()
        self._exit.callback(thread.join, 10)
        self._exit.callback(self._stop.set)

    def _reconcile_on_schedule(self, stop: threading.Event, every_seconds: float) -> None:
        while not stop.wait(every_seconds):
            try:
                self.reconcile_now()
            except Exception:  # like a failed scheduled invocation: the next one comes on time
                log.exception("scheduled reconciler pass failed")

    def reconcile_now(self) -> dict[str, Any]:
        """One reconciler pass, invoked as the schedule invokes it; its report."""
        if self.reconciler is None:
            raise RuntimeError("the stack is not started")
        with self._reconciler_lock:
            context = LocalLambdaContext("reconciler", timeout_seconds=self._reconciler_timeout)
            report: dict[str, Any] = _metrics_off(self.reconciler)({"source": "local.schedule"}, context)
        return report

    def _start_moto(self) -> str:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # its request lines name object keys
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        self._exit.callback(server.stop)
        return f"http://127.0.0.1:{port}"

    def _start_dynamodb(self, moto_url: str) -> tuple[str, str]:
        try:
            return self._exit.enter_context(running_dynamodb_local()), "DynamoDB Local"
        except DynamoDBLocalUnavailable as exc:
            log.warning(
                "WARNING: DynamoDB Local could not start (%s); falling back to moto's DynamoDB emulation, "
                "which is less faithful to DynamoDB's conditions and reserved words.",
                exc,
            )
            return moto_url, "moto (fallback)"

    def _start_cobalt(self) -> tuple[str, dict[str, Any]]:
        if self.options.cobalt_url:
            return self.options.cobalt_url.rstrip("/"), cobalt_credentials_from_env()
        config = SandboxConfig.load()
        config.processing_delay_seconds = self.options.processing_delay_seconds
        self.sandbox = CobaltSandbox(config, self.options.faults or FaultSettings())
        self.sandbox.serve(0)
        self._exit.callback(self.sandbox.stop)
        self._set_env({"COBALT_ACCOUNT_PREFIXES": SANDBOX_ACCOUNT_PREFIXES})
        return self.sandbox.base_url, dict(SANDBOX_ACCOUNTS)

    def _log_to_file(self, module: ModuleType, path: Path) -> None:
        """A function's JSON log lines go to a file, as CloudWatch Logs keeps them apart from the console."""
        stream = path.open("a", encoding="utf-8")
        self._exit.callback(stream.close)
        for handler in module.logger.handlers:
            if isinstance(handler, logging.StreamHandler):
                previous = handler.setStream(stream)
                if previous is not None:  # the logger outlives the stack (logging keeps it by name): give it back
                    self._exit.callback(handler.setStream, previous)

    def _set_env(self, values: dict[str, str | None]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    # ----- stop -------------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        try:
            self._exit.close()
        finally:
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._saved_env.clear()


def _metrics_off(function: ModuleType) -> Callable[[dict[str, Any], Any], Any]:
    """A function's handler as the local stack invokes it, with metrics off (POWERTOOLS_METRICS_DISABLED).

    Powertools does not clear disabled metrics and prints them anyway at their 100th value, on the demo's console;
    every function here shares one process (Lambda gives each its own), so they are cleared after each invocation.
    """

    def invoke(event: dict[str, Any], context: Any) -> Any:
        try:
            return function.handler(event, context)
        finally:
            function.metrics.clear_metrics()

    return invoke
