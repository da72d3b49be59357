"""The whole pipeline on one machine, no AWS account, no Docker.

moto server (S3, SQS, Secrets Manager, CloudWatch), the real DynamoDB Local engine (moto's DynamoDB only as a loud
fallback), the Cobalt sandbox or any Cobalt-compatible server, the uploader driven as the SQS event source mapping
would drive it, and the webhook handler behind the local HTTP adapter. Resources come from template.yaml's own
definitions; the webhook is registered with Cobalt (POST /v1/webhook) and its secret stored in Secrets Manager, as in
production. Everything listens on 127.0.0.1 and stops on exit.

Each function runs in worker processes (local.workers), as Lambda's execution environments: the uploader up to its
event source's MaximumConcurrency at once, each invocation killed at its timeout, and crashes can be injected
(StackOptions.crash, or `stack.functions["uploader"].crash_next(point)`). Nothing the stack starts outlives it, even
when it is killed. An orderly stop stops taking messages, lets the invocations in flight end (or their timeout kill
them, so the ledger keeps their claims for review), says what was in flight, and only then stops the engines.
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
from typing import Any

import boto3
from docdrop.cobalt import CobaltClient
from docdrop_cli.target import process_running

from local.cobalt_sandbox import CobaltSandbox, FaultSettings, SandboxConfig
from local.dynamodb_local import DynamoDBLocalUnavailable, running_dynamodb_local
from local.event_source import SqsEventSource
from local.lambda_api import LocalLambdaApi
from local.moto_process import running_moto_server
from local.resources import (
    IngestQueues,
    create_access_trail,
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
from local.template import function_timeout, load_template
from local.webhook_adapter import WebhookAdapter
from local.workers import CrashPlan, FunctionWorkers

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
    cobalt_answer_seconds: float = 0.0  # how long the sandbox takes to answer an upload
    faults: FaultSettings | None = None
    batching_window_seconds: float | None = None  # None: the template's
    visibility_timeout_seconds: int | None = None  # None: the queue's (from the template)
    # The reconciler's schedule and deadlines in seconds; None: the template's parameter defaults.
    reconcile_every_seconds: float | None = None
    outcome_grace_seconds: float | None = None
    stale_after_seconds: float | None = None
    tag_wait_seconds: float | None = None
    silent_after_seconds: float | None = None  # SilentAfterHours, in seconds (None: the template's 72 h)
    resend_silent_reviews: bool = False  # ResendSilentReviews
    # Divides the retry schedule's delays (and the reconciler's retry horizon): 60 turns an hour of waiting for Cobalt
    # into a minute.
    time_scale: float = 1.0
    # How often the webhook may re-read its signing secret on a mismatch (the template's 60 s; tests shorten it).
    secret_reread_seconds: float = 60.0
    # The uploader's timeout (None: the template's 90 s); with a short visibility timeout, a killed batch comes back
    # soon. The claim's lease is the invocation's time plus 30 s, so keep visibility above that to see it expire.
    uploader_timeout_seconds: float | None = None
    max_concurrent_uploads: int | None = None  # None: the template's MaximumConcurrency
    webhook_concurrency: int = 4  # webhook invocations at once (API Gateway's, bounded locally to spare memory)
    account_concurrency: int = 1000  # the Lambda concurrency limit GetAccountSettings answers (a new account: 10)
    crash: CrashPlan | None = None  # kill uploader workers at random at the crash points
    # Keep the DynamoDB Local data and the resource names in state_dir across restarts (moto's S3, SQS and secrets
    # live in memory and start empty again; the ledger says what was in flight).
    keep_state: bool = False


class StackAlreadyRunning(RuntimeError):
    """Another running stack owns this state folder."""


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
    webhook_url: str  # /webhooks/cobalt/<token>, as the WebhookUrl output
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
    stack_id: str = ""  # every process the stack starts carries DOCDROP_STACK_ID=stack_id in its environment
    previous_webhook_url: str = ""  # the PreviousWebhookUrl output: the old token's route, while the token changes

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
        self.event_source: SqsEventSource | None = None
        self.stream_source: DynamoDBStreamSource | None = None
        # The functions' execution environments, by function: uploader, webhook, outcome_joiner, reconciler.
        self.functions: dict[str, FunctionWorkers] = {}
        self.lambda_api: LocalLambdaApi | None = None
        self.stack_id = uuid.uuid4().hex
        self._stop_uploads = threading.Event()
        self._uploads_stopped = threading.Event()
        self._reconciler_lock = threading.Lock()

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
        state_file = options.state_dir / "local-stack.json"
        _refuse_if_running(state_file)
        name = self._stack_name()
        # Every process the stack starts inherits DOCDROP_STACK_ID: what finds one that outlived it.
        self._set_env({**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})
        self._set_env({"DOCDROP_STACK_ID": self.stack_id})
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
        table = f"{name}-ledger"
        if table not in dynamodb.list_tables()["TableNames"]:  # kept from the last run with keep_state
            create_ledger_table(dynamodb, table, template)
        cloudtrail = boto3.client("cloudtrail", endpoint_url=moto_url, region_name=REGION)
        table_arn = dynamodb.describe_table(TableName=table)["Table"]["TableArn"]
        create_access_trail(s3, cloudtrail, name, bucket, table_arn, template)

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
        self._set_env(
            {
                "OUTCOME_GRACE_MINUTES": repr(deadlines["outcome_grace_seconds"] / 60),
                "STALE_AFTER_HOURS": repr(deadlines["stale_after_seconds"] / 3600),
                "TAG_WAIT_HOURS": repr(deadlines["tag_wait_seconds"] / 3600),
                "RETRY_HORIZON_MINUTES": repr(
                    float(schedule.environment["RETRY_HORIZON_MINUTES"]) / options.time_scale
                ),
                "DEAD_LETTER_QUEUE_ARN": self.queues.dlq_arn,
                "RESEND_SILENT_REVIEWS": "true" if options.resend_silent_reviews else "false",
                **(
                    {"SILENT_AFTER_HOURS": repr(options.silent_after_seconds / 3600)}
                    if options.silent_after_seconds
                    else {}
                ),
            }
        )
        self._set_env(
            {
                "LEDGER_TABLE": table,
                "RECORD_RETENTION_DAYS": "0",
                "POWERTOOLS_METRICS_NAMESPACE": "DocDrop",
                # EMF goes to stdout in Lambda, where CloudWatch reads it; locally it would only fill the log files.
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
        # What every function's environment holds, fixed now (a later change of this process's environment, by a test
        # say, reaches no function, as a deployed function's configuration does not change under it).
        environment = dict(os.environ)

        def workers(function: str, logical_id: str, **settings: Any) -> FunctionWorkers:
            settings.setdefault("timeout_seconds", function_timeout(template, logical_id))
            pool = FunctionWorkers(
                function,
                log_path=logs_dir / f"{function.replace('_', '-')}.log",
                environment=environment,
                **settings,
            )
            self.functions[function] = pool
            self._exit.callback(pool.stop)
            return pool

        webhook = workers("webhook", "WebhookFunction", max_concurrency=options.webhook_concurrency, memory_mb=1024)
        adapter = self.webhook_adapter = WebhookAdapter(
            webhook.handler, timeout_seconds=webhook.timeout_seconds, access_log=logs_dir / "webhook-access.log"
        ).start()
        self._exit.callback(adapter.stop)

        # The same set-up step as production: register the URL with Cobalt, keep the secret it answers with.
        cobalt = CobaltClient(cobalt_url, lambda refresh: credentials)
        registration = cobalt.register_webhook(adapter.url)
        if registration.webhook_id:  # a URL that dies with this stack must not stay registered with Cobalt
            self._exit.callback(cobalt.delete_webhook, registration.webhook_id)
        secrets.put_secret_value(
            SecretId=signing_secret, SecretString=json.dumps({"current": registration.secret, "previous": ""})
        )

        # The outcome joiner on the ledger's stream, as the template's DynamoDB event drives it.
        joiner = workers("outcome_joiner", "OutcomeJoinerFunction", max_concurrency=1, memory_mb=256)
        streams = boto3.client("dynamodbstreams", endpoint_url=dynamodb_url, region_name=REGION)
        stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.stream_source = DynamoDBStreamSource(
            streams, stream_arn, joiner.handler, outcome_joiner_stream_source(template), poll_interval_seconds=0.25
        )
        self._start_thread("ledger-stream", self.stream_source.run)

        # The reconciler on its schedule (the local stack's EventBridge Scheduler).
        workers("reconciler", "ReconcilerFunction", max_concurrency=1)
        self._start_thread("reconciler-schedule", self._reconcile_on_schedule, deadlines["every_seconds"])
        reconciler_name = f"{name}-reconciler"
        lambda_api = self.lambda_api = LocalLambdaApi(
            {reconciler_name: lambda event: self.reconcile_now()}, concurrency_limit=options.account_concurrency
        ).start()
        self._exit.callback(lambda_api.stop)

        # The uploader, last: it is the first to stop (see stop), while the webhook and the engines still serve it.
        settings = uploader_event_source(template)
        if options.batching_window_seconds is not None:
            settings = dataclasses.replace(settings, batching_window_seconds=options.batching_window_seconds)
        if options.max_concurrent_uploads is not None:
            settings = dataclasses.replace(settings, maximum_concurrency=options.max_concurrent_uploads)
        if options.uploader_timeout_seconds is not None:
            settings = dataclasses.replace(settings, function_timeout_seconds=options.uploader_timeout_seconds)
        uploader = workers(
            "uploader",
            "UploaderFunction",
            timeout_seconds=settings.function_timeout_seconds,
            max_concurrency=settings.maximum_concurrency,
            crash=options.crash,
        )
        self.event_source = SqsEventSource(
            sqs,
            self.queues.queue_url,
            self.queues.queue_arn,
            uploader.handler,
            settings,
            visibility_timeout=options.visibility_timeout_seconds,
        )
        poller = threading.Thread(target=self._poll_uploads, name="sqs-event-source", daemon=True)
        poller.start()
        self._exit.callback(self._stop_uploads.set)

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
                name: str(logs_dir / f"{name}.log")
                for name in ("uploader", "webhook", "webhook-access", "outcome-joiner", "reconciler")
            },
            reconciler=deadlines,
            function_environment={k: os.environ[k] for k in sorted(self._saved_env) if k in os.environ},
            lambda_endpoint_url=lambda_api.url,
            functions={"reconciler": reconciler_name},
            pid=os.getpid(),
            stack_id=self.stack_id,
        )
        self._state_file = state_file
        state_file.write_text(self.info.to_json() + "\n", encoding="utf-8")
        self._exit.callback(state_file.unlink, missing_ok=True)
        self._exit.callback(self._stop_taking_uploads)  # first of all: the stack file stays while uploads drain
        return self.info

    def deploy_webhook_path(self, token: str, previous: str | None = None) -> StackInfo:
        """What `sam deploy` with WebhookPathToken=token and WebhookPreviousPathToken=previous does to the webhook's
        routes and the stack's outputs (WebhookUrl, PreviousWebhookUrl): the step before and after
        `docdrop rotate-webhook-path`."""
        if self.info is None:
            raise RuntimeError("the stack is not started")
        self.webhook_adapter.deploy(token, previous)
        self.info = info = dataclasses.replace(
            self.info,
            webhook_url=self.webhook_adapter.url,
            previous_webhook_url=self.webhook_adapter.previous_url or "",
        )
        self._state_file.write_text(info.to_json() + "\n", encoding="utf-8")
        return info

    def _stack_name(self) -> str:
        """A new name per run; with keep_state, the one kept in the state folder, so the kept table is found again."""
        names = self.options.state_dir / "stack-name"
        if self.options.keep_state and names.exists():
            return names.read_text(encoding="utf-8").strip()
        name = f"docdrop-local-{uuid.uuid4().hex[:6]}"
        if self.options.keep_state:
            names.write_text(name + "\n", encoding="utf-8")
        return name

    def _poll_uploads(self) -> None:
        assert self.event_source is not None
        try:
            self.event_source.run(self._stop_uploads)
        finally:
            self._uploads_stopped.set()

    def _stop_taking_uploads(self) -> None:
        """The orderly stop's first step: no new batch; the batches in flight end (or their timeout kills them)."""
        self._stop_uploads.set()
        messages = self.event_source.in_flight if self.event_source is not None else 0
        uploader = self.functions.get("uploader")
        if not messages or uploader is None:
            self._uploads_stopped.wait()
            return
        log.warning(
            "Stopping: %d uploader invocation(s) in flight with %d message(s); letting them end (at most %g s)",
            uploader.in_flight,
            messages,
            uploader.timeout_seconds,
        )
        timeouts = uploader.stats.timeouts
        self._uploads_stopped.wait()
        killed = uploader.stats.timeouts - timeouts
        log.warning(
            "Stopped: every invocation in flight ended"
            + (
                f"; {killed} ran past the timeout and were killed (their objects stay RECEIVED, and are marked "
                "for review when their messages come back)"
                if killed
                else ""
            )
        )

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
        reconciler = self.functions.get("reconciler")
        if reconciler is None:
            raise RuntimeError("the stack is not started")
        with self._reconciler_lock:
            report: dict[str, Any] = reconciler.invoke({"source": "local.schedule"})
        return report

    def _start_moto(self) -> str:
        return self._exit.enter_context(running_moto_server())

    def _start_dynamodb(self, moto_url: str) -> tuple[str, str]:
        try:
            data = self.options.state_dir / "dynamodb" if self.options.keep_state else None
            return self._exit.enter_context(running_dynamodb_local(db_path=data)), "DynamoDB Local"
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
        config.answer_seconds = self.options.cobalt_answer_seconds
        self.sandbox = CobaltSandbox(config, self.options.faults or FaultSettings())
        self.sandbox.serve(0)
        self._exit.callback(self.sandbox.stop)
        self._set_env({"COBALT_ACCOUNT_PREFIXES": SANDBOX_ACCOUNT_PREFIXES})
        return self.sandbox.base_url, dict(SANDBOX_ACCOUNTS)

    def _set_env(self, values: dict[str, str | None]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    # ----- stop -------------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop in order: uploads first (drained), then the schedules and the stream, the webhook, the engines."""
        try:
            self._exit.close()
        finally:
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._saved_env.clear()


def _refuse_if_running(state_file: Path) -> None:
    """A state folder serves one running stack: a second start there would take its file (and its names)."""
    try:
        pid = int(json.loads(state_file.read_text(encoding="utf-8")).get("pid") or 0)
    except (OSError, ValueError, AttributeError):
        return  # no file, or not one of ours: nothing runs from it
    if pid and pid != os.getpid() and process_running(pid):
        raise StackAlreadyRunning(
            f"a local stack (process {pid}) is already running from {state_file.parent}; stop it, or use --state-dir"
        )
