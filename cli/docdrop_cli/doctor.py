"""`docdrop doctor`: checks a deployment end to end, and says what to fix in one line each."""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError
from docdrop.cobalt import CobaltClient, CobaltSetupError, EventLogUnavailable
from docdrop.ledger import parse_moment

from docdrop_cli.output import OperatorError, write_json
from docdrop_cli.target import Target, resolve_target
from docdrop_cli.webhook_setup import PLACEHOLDER, SecretStore, credentials_problem

FAILED_DELIVERY_WINDOW = timedelta(hours=24)
MAX_LOG_PAGES = 10
# Each check's name as printed, by the method that makes it.
CHECKS = {
    "credentials_filled": "Cobalt credentials filled",
    "cobalt_reachable": "Cobalt reachable with them",
    "webhook_registered": "webhook URL registered",
    "signing_secret_matches": "webhook signing secret matches",
    "bucket_versioning": "inbox bucket versioning",
    "bucket_notification": "bucket notification to the ingest queue",
    "ledger_stream": "ledger stream for the outcome joiner",
    "alarms_subscribed": "alarms reach a person",
    "dead_letter_queue_empty": "dead-letter queue empty",
    "lambda_concurrency": "Lambda concurrency for the functions",
    "access_trail": "a trail records who reads the documents",
}
# Unreserved concurrency never drops below this (Lambda), and a new account may have no more: enough for the uploader
# at its default MaxConcurrentUploads (5), the webhook's bursts, the outcome joiner and the reconciler.
ACCOUNT_MINIMUM = 10
COMFORTABLE = 100  # below this, a burst of webhooks and a full uploader can meet throttles: ask for a higher quota


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: could not be checked (a check before it failed, or nothing to check here)
    detail: str


class Doctor:
    """Each check reads what it needs; a check that cannot run says why instead of failing the next."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.store = SecretStore(target)
        self.cobalt: CobaltClient | None = None
        self.webhooks: list[Any] | None = None

    def run(self) -> list[Check]:
        steps: list[Callable[[], Check]] = [
            self.credentials_filled,
            self.cobalt_reachable,
            self.webhook_registered,
            self.signing_secret_matches,
            self.bucket_versioning,
            self.bucket_notification,
            self.ledger_stream,
            self.alarms_subscribed,
            self.dead_letter_queue_empty,
            self.lambda_concurrency,
            self.access_trail,
        ]
        checks = []
        for step in steps:
            try:
                checks.append(step())
            except OperatorError:
                raise
            except (ClientError, BotoCoreError) as exc:
                checks.append(Check(CHECKS[step.__name__], False, f"could not be read: {_aws_reason(exc)}"))
        return checks

    def access_trail(self) -> Check:
        """Some logging CloudTrail trail records the inbox's object events (data events): who read which document."""
        name = CHECKS["access_trail"]
        bucket = self.target.need("bucket", "the inbox bucket")
        cloudtrail = self.target.client("cloudtrail")
        for trail in cloudtrail.describe_trails(includeShadowTrails=False).get("trailList", []):
            arn = trail["TrailARN"]
            if _records_objects_of(cloudtrail.get_event_selectors(TrailName=arn), bucket):
                if cloudtrail.get_trail_status(Name=arn).get("IsLogging"):
                    return Check(name, True, f"trail {trail['Name']}")
                return Check(name, False, f"trail {trail['Name']} covers the bucket but is not logging: start it")
        return Check(
            name,
            False,
            "no trail records reads of the inbox's documents: deploy with AccessTrail=create, or add the bucket's "
            "data events to a trail and give its name as AccessTrail",
        )

    def lambda_concurrency(self) -> Check:
        """The account's Lambda concurrency limit, and what it leaves around MaxConcurrentUploads."""
        name = CHECKS["lambda_concurrency"]
        limit = self.target.client("lambda").get_account_settings()["AccountLimit"]
        total, unreserved = int(limit["ConcurrentExecutions"]), int(limit["UnreservedConcurrentExecutions"])
        said = f"account limit {total} ({unreserved} unreserved)"
        if unreserved < ACCOUNT_MINIMUM:
            return Check(name, False, f"{said}: below {ACCOUNT_MINIMUM}, the functions are throttled; raise the quota")
        if total < COMFORTABLE:
            room = total - 3  # the webhook, the joiner and the reconciler each need at least one
            return Check(
                name,
                True,
                f"{said}: MaxConcurrentUploads up to {room} leaves room for the webhook, the joiner and the reconciler;"
                " ask AWS (Service Quotas) for 1000 before heavy use, or webhook bursts may be throttled",
            )
        return Check(name, True, said)

    @functools.cached_property
    def credentials(self) -> dict[str, Any]:
        """The Cobalt credentials secret, read once for every check that needs it."""
        return self.store.read("credentials_secret")

    def credentials_filled(self) -> Check:
        name = CHECKS["credentials_filled"]
        problem = credentials_problem(self.credentials)
        if problem:
            return Check(name, False, f"{problem}: put the real values in {self.target.credentials_secret}")
        return Check(name, True, "client_id, client_secret and access_token set")

    def cobalt_reachable(self) -> Check:
        name = CHECKS["cobalt_reachable"]
        if credentials_problem(self.credentials):
            return Check(name, None, "skipped: fill the credentials first")
        credentials = self.credentials
        base = self.target.cobalt_base_url or ""
        self.cobalt = CobaltClient(base, lambda refresh: credentials, read_timeout=10.0)
        try:
            self.webhooks = self.cobalt.list_webhooks()
        except CobaltSetupError as exc:
            self.cobalt = None
            if exc.error_code == "login_required":
                return Check(name, False, "the EHR link expired (login_required): re-link the account in Cobalt")
            if exc.status_code in (401, 403):
                return Check(name, False, f"Cobalt refuses these credentials (HTTP {exc.status_code}): check them")
            return Check(name, False, f"{exc}: check CobaltBaseUrl ({base}) and the network")
        return Check(name, True, base)

    def webhook_registered(self) -> Check:
        name = CHECKS["webhook_registered"]
        url = self.target.webhook_url
        if self.webhooks is None or not url:
            return Check(name, None, "skipped: Cobalt not reachable" if url else "skipped: the webhook URL is unknown")
        old = self.target.previous_webhook_url  # deployed while the path token changes
        if any(w.url == url for w in self.webhooks):
            if old and any(w.url == old for w in self.webhooks):
                return Check(name, False, "the old path token's URL is registered too: run docdrop rotate-webhook-path")
            return Check(name, True, url)
        fix = "docdrop rotate-webhook-path" if old else "docdrop register-webhook"
        return Check(name, False, f"{url} is not registered with Cobalt: run {fix}")

    def signing_secret_matches(self) -> Check:
        """Deliveries Cobalt logged as failed since the secret was last stored: it signs with another secret (or the
        endpoint fails). Cobalt never shows its secret, so its own delivery log is the evidence."""
        name = CHECKS["signing_secret_matches"]
        document = self.store.read("signing_secret")
        if document.get("current") in (None, "", PLACEHOLDER):
            return Check(name, False, "no signing secret stored: run docdrop register-webhook")
        if self.cobalt is None:
            return Check(name, None, "skipped: Cobalt not reachable")
        since = datetime.now(UTC) - FAILED_DELIVERY_WINDOW
        changed = self.store.last_changed("signing_secret")
        if changed is not None and not changed.microsecond:  # to the second: the rest of that second is before it
            changed += timedelta(seconds=1)
        if changed is not None and changed > since:
            since = changed
        failed: list[dict[str, Any]] = []
        number, pages = 1, 1
        try:
            while number <= min(pages, MAX_LOG_PAGES):
                page = self.cobalt.webhook_events(
                    event_type=None, start_date=since.date(), page=number, page_size=100, delivery_status="failed"
                )
                created = (parse_moment(e.get("created")) for e in page.events)
                failed += [e for e, at in zip(page.events, created, strict=True) if at is not None and at >= since]
                number, pages = number + 1, page.total_pages
        except EventLogUnavailable as exc:
            return Check(name, None, f"could not read Cobalt's event log ({exc})")
        if failed:
            return Check(
                name,
                False,
                f"{len(failed)} deliveries failed since {since.isoformat(timespec='seconds')}: the secret or the "
                "endpoint is wrong; run docdrop rotate-webhook-secret (the reconciler recovers the events)",
            )
        return Check(name, True, f"no failed delivery since {since.isoformat(timespec='seconds')}")

    def bucket_versioning(self) -> Check:
        name = CHECKS["bucket_versioning"]
        bucket = self.target.need("bucket", "the inbox bucket")
        status = self.target.client("s3").get_bucket_versioning(Bucket=bucket).get("Status", "never enabled")
        if status == "Enabled":
            return Check(name, True, "Enabled")
        return Check(
            name, False, f"{status}: nothing is sent until it is Enabled again (aws s3api put-bucket-versioning)"
        )

    def bucket_notification(self) -> Check:
        name = CHECKS["bucket_notification"]
        bucket = self.target.need("bucket", "the inbox bucket")
        queue_arn = _queue_arn(self.target, self.target.need("queue_url", "the ingest queue"))
        config = self.target.client("s3").get_bucket_notification_configuration(Bucket=bucket)
        events: set[str] = set()
        for entry in config.get("QueueConfigurations", []):
            if entry.get("QueueArn") == queue_arn:
                events.update(entry.get("Events", []))
        if any(e.startswith("s3:ObjectCreated:") for e in events):
            return Check(name, True, ", ".join(sorted(events)))
        return Check(name, False, "new objects reach nothing: redeploy the stack (sam deploy) to restore it")

    def ledger_stream(self) -> Check:
        name = CHECKS["ledger_stream"]
        table = self.target.client("dynamodb").describe_table(TableName=self.target.table)["Table"]
        stream = (table.get("StreamSpecification") or {}).get("StreamViewType")
        if stream in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            return Check(name, True, str(stream))
        return Check(name, False, "off: objects would stay SUBMITTED after their outcome; redeploy the stack")

    def alarms_subscribed(self) -> Check:
        name = CHECKS["alarms_subscribed"]
        topic = self.target.alarm_topic_arn
        if not topic:
            return Check(name, None, "no alarm topic here (the local stack has none)")
        subscriptions = self.target.client("sns").list_subscriptions_by_topic(TopicArn=topic).get("Subscriptions", [])
        confirmed = [s for s in subscriptions if str(s.get("SubscriptionArn", "")).startswith("arn:")]
        if not confirmed:
            pending = " (one awaits confirmation: open the e-mail)" if subscriptions else ""
            return Check(name, False, f"nobody is subscribed to {topic}{pending}: deploy with AlarmEmail set")
        actionless = _alarms_without(self.target, topic)
        if actionless:
            return Check(name, False, f"{len(actionless)} alarms send nowhere ({', '.join(actionless[:3])}…): redeploy")
        return Check(name, True, f"{len(confirmed)} confirmed subscription(s)")

    def dead_letter_queue_empty(self) -> Check:
        name = CHECKS["dead_letter_queue_empty"]
        dlq = self.target.need("dlq_url", "the dead-letter queue")
        attributes = self.target.client("sqs").get_queue_attributes(
            QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        waiting = int(attributes["ApproximateNumberOfMessages"])
        if waiting:
            return Check(name, False, f"{waiting} messages wait: fix the cause, then docdrop redrive")
        return Check(name, True, "empty")


def _queue_arn(target: Target, url: str) -> str:
    attributes = target.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attributes["QueueArn"])


def _alarms_without(target: Target, topic: str) -> list[str]:
    """The stack's alarms (named after it) whose actions do not include the alarm topic."""
    names = []
    kwargs = {"AlarmNamePrefix": target.stack_name} if target.stack_name else {}
    for page in target.client("cloudwatch").get_paginator("describe_alarms").paginate(**kwargs):
        for alarm in page.get("MetricAlarms", []):
            if topic not in alarm.get("AlarmActions", []):
                names.append(str(alarm["AlarmName"]))
    return names


def _aws_reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return type(exc).__name__


def doctor_command(args: argparse.Namespace, out: TextIO) -> int:
    """Exit codes: 0 every check passed (or could not apply here); 1 at least one failed."""
    checks = Doctor(resolve_target(args)).run()
    if args.json:
        write_json([dataclasses.asdict(c) for c in checks], out)
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            mark = {True: "ok  ", False: "FAIL", None: "--  "}[check.ok]
            out.write(f"{mark}  {check.name:<{width}}  {check.detail}\n")
    return 1 if any(c.ok is False for c in checks) else 0


def _records_objects_of(selectors: dict[str, Any], bucket: str) -> bool:
    """Whether a trail's event selectors (basic or advanced) record read and write data events of every object in
    `bucket`."""
    objects = f"arn:aws:s3:::{bucket}/"
    for basic in selectors.get("EventSelectors") or []:
        if basic.get("ReadWriteType", "All") != "All":
            continue
        for resource in basic.get("DataResources") or []:
            values = resource.get("Values") or []
            if resource.get("Type") == "AWS::S3::Object" and any(objects.startswith(v) for v in values):
                return True
    for advanced in selectors.get("AdvancedEventSelectors") or []:
        fields = {f["Field"]: f for f in advanced.get("FieldSelectors") or []}
        if (fields.get("eventCategory") or {}).get("Equals") != ["Data"]:
            continue
        if (fields.get("resources.type") or {}).get("Equals") != ["AWS::S3::Object"]:
            continue
        if "readOnly" in fields or any(k not in ("eventCategory", "resources.type", "resources.ARN") for k in fields):
            continue  # only reads, or only some events: not every access
        arn = fields.get("resources.ARN")
        if arn is None or any(objects.startswith(v) for v in arn.get("StartsWith") or []):
            return True
    return False
