"""The one table adapter: the only code that calls DynamoDB. It holds the items' keys, the calls (their errors made
`LedgerError`), the conditional update with its own-write check, paging, batch reads and index queries. Each store
(`docdrop.ledger.objects`, `.documents`, ...) builds on it and owns the writes of one kind of item."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from docdrop.ledger.expression import Expression, item_values, plain
from docdrop.ledger.model import ATTEMPT_PREFIX, HISTORY_PREFIX, LedgerError, LedgerRefusedItem, ObjectRef, Status

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class LedgerTable:
    """One ledger table, and how every store reaches it: a store is this adapter plus the writes of its items."""

    def __init__(self, client: DynamoDBClient, table_name: str, retention_days: int = 0) -> None:
        self._client = client
        self._table = table_name
        self._retention = timedelta(days=retention_days) if retention_days > 0 else None

    @staticmethod
    def _object_key(object_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"OBJ#{object_id}"}, "sk": {"S": "OBJ"}}

    @staticmethod
    def _document_key(document_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"CDOC#{document_id}"}, "sk": {"S": "CDOC"}}

    @staticmethod
    def _history_key(object_id: str, at: str, status: str) -> dict[str, Any]:
        return {"pk": {"S": f"OBJ#{object_id}"}, "sk": {"S": f"{HISTORY_PREFIX}{at}#{status}"}}

    @staticmethod
    def _attempt_key(object_id: str, sent_at: str) -> dict[str, Any]:
        return {"pk": {"S": f"OBJ#{object_id}"}, "sk": {"S": f"{ATTEMPT_PREFIX}{sent_at}"}}

    @staticmethod
    def _link_key(reference_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"TOKEN#{reference_id}"}, "sk": {"S": "TOKEN"}}

    @staticmethod
    def _breaker_key(account: str) -> dict[str, Any]:
        return {"pk": {"S": f"BREAKER#{account}"}, "sk": {"S": "BREAKER"}}

    @staticmethod
    def _run_key(name: str) -> dict[str, Any]:
        return {"pk": {"S": f"RUN#{name}"}, "sk": {"S": "RUN"}}

    def _object_expiry(self, status: Status) -> int | None:
        """Retention never makes DocDrop forget whether a version was sent: only a version it refused before sending
        (REJECTED) may expire. Everything sent, or maybe sent, keeps its object item for ever."""
        if self._retention is None or status is not Status.REJECTED:
            return None
        return int((datetime.now(UTC) + self._retention).timestamp())

    def _document_expiry(self) -> int | None:
        """A Cobalt document's events and outcome may expire; its object keeps the outcome and Cobalt's reason."""
        if self._retention is None:
            return None
        return int((datetime.now(UTC) + self._retention).timestamp())

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self._client, operation)(**kwargs)
        except ClientError:
            raise
        except Exception as exc:  # botocore connection and timeout errors: the write may not have happened
            raise LedgerError(f"DynamoDB {operation} failed: {type(exc).__name__}") from exc
        return result

    def _conditional_update(self, key: dict[str, Any], expression: Expression, update: str, condition: str) -> bool:
        """One conditional UpdateItem; False when the condition did not hold."""
        try:
            self._call("update_item", TableName=self._table, Key=key, **expression.kwargs(update, condition))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise failure(exc, "update") from exc
        return True

    def _update_both_ways(self, key: dict[str, Any], expression: Mapping[str, Any]) -> dict[str, Any]:
        """A conditional UpdateItem that returns what it changed (`UPDATED_OLD`) or, when its condition fails, raises
        with the whole item as it stood (`ALL_OLD`): who holds it, or whether a retried write was already applied."""
        return self._call(
            "update_item",
            TableName=self._table,
            Key=key,
            ReturnValues="UPDATED_OLD",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **expression,
        )

    def _get(self, key: dict[str, Any], consistent: bool = True) -> dict[str, Any] | None:
        answer = self._call("get_item", TableName=self._table, Key=key, ConsistentRead=consistent)
        return plain(answer.get("Item"))

    def _pages(self, operation: str, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every page of a Query or Scan, following `LastEvaluatedKey`."""
        request = dict(request)
        while True:
            page = self._call(operation, **request)
            yield page
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _items_under(self, pk: str, sk_prefix: str, consistent: bool = False) -> Iterator[dict[str, Any]]:
        """The items of partition `pk` whose sort key starts with `sk_prefix` (a Query, page by page): an object's
        history, an account link's events."""
        e = Expression()
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": f"{e.n('pk')} = {e.v(pk)} AND begins_with({e.n('sk')}, {e.v(sk_prefix)})",
            "ExpressionAttributeNames": e.names,
            "ExpressionAttributeValues": item_values(e.values),
        }
        if consistent:
            query["ConsistentRead"] = True
        return self._items("query", query)

    def _items(self, operation: str, request: Mapping[str, Any], limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The items a Query or Scan returns, page by page; with `limit`, no more than it."""
        returned = 0
        for page in self._pages(operation, request):
            for raw in page.get("Items", []):
                found = plain(raw)
                if found is not None:
                    yield found
                    returned += 1
                    if limit is not None and returned >= limit:
                        return

    def _scan(self, e: Expression, condition: str, projection: str | None = None) -> Iterator[dict[str, Any]]:
        """Every item of the table that `condition` (built with `e`) keeps: a Scan, page by page."""
        scan = {
            "TableName": self._table,
            "FilterExpression": condition,
            "ExpressionAttributeNames": e.names,
            "ExpressionAttributeValues": item_values(e.values),
            **({"ProjectionExpression": projection} if projection else {}),
        }
        return self._items("scan", scan)

    def _batch_items(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items of `keys` (BatchGetItem, 100 at a time, consistent), in the order of `keys`."""
        found: dict[tuple[str, str], dict[str, Any]] = {}  # by pk and sk: an attempt item shares its object's pk
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self._table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            while request:
                answer = self._call("batch_get_item", RequestItems=request)
                for raw in answer.get("Responses", {}).get(self._table, []):
                    found[(raw["pk"]["S"], raw["sk"]["S"])] = plain(raw) or {}
                request = answer.get("UnprocessedKeys") or {}
        wanted = [(k["pk"]["S"], k["sk"]["S"]) for k in keys]
        return [found[k] for k in wanted if k in found]

    def _index_query(
        self,
        index: str,
        hash_attr: str,
        range_attr: str,
        value: str,
        before: datetime | None,
        forward: bool,
        since: datetime | None = None,
    ) -> dict[str, Any]:
        e = Expression()
        condition = f"{e.n(hash_attr)} = {e.v(value)}"
        low = e.v(since.isoformat(timespec="microseconds")) if since is not None else None
        high = e.v(before.isoformat(timespec="microseconds")) if before is not None else None
        if low and high:
            condition += f" AND {e.n(range_attr)} BETWEEN {low} AND {high}"
        elif high:
            condition += f" AND {e.n(range_attr)} <= {high}"
        elif low:
            condition += f" AND {e.n(range_attr)} >= {low}"
        return {
            "TableName": self._table,
            "IndexName": index,
            "ScanIndexForward": forward,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": e.names,
            "ExpressionAttributeValues": item_values(e.values),
        }

    def _index_items(
        self,
        index: str,
        hash_attr: str,
        range_attr: str,
        value: str,
        before: datetime | None,
        limit: int | None,
        newest_first: bool,
        since: datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Items of one index partition, page by page; with `limit`, pages of that size and no more rows than it."""
        query = self._index_query(index, hash_attr, range_attr, value, before, not newest_first, since)
        if limit is not None:
            query["Limit"] = limit
        return self._items("query", query, limit)


def failure(exc: ClientError, what: str) -> LedgerError:
    """The error a failed call becomes: refused for good (the item itself is invalid), or possibly transient."""
    code = exc.response["Error"]["Code"]
    if code == "ValidationException":
        return LedgerRefusedItem(f"DynamoDB refused the {what} (ValidationException)")
    return LedgerError(f"DynamoDB {what} failed: {code}")


def ref_attributes(ref: ObjectRef) -> dict[str, Any]:
    return {"bucket": ref.bucket, "key": ref.key, "version_id": ref.version_id, "object_id": ref.object_id}
