"""The ledger's expression builder: DynamoDB update and condition expressions with a placeholder for every name and
value (no reserved word can break one), and the conversions between plain Python values and DynamoDB's typed items."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

if TYPE_CHECKING:
    from docdrop.ledger.model import Status

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def item_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def plain(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def clean(value: Any) -> Any:
    """Drop None values, at any depth, so absent optional fields are left out of the item instead of stored as NULL."""
    if isinstance(value, Mapping):
        return {k: clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


class Expression:
    """Placeholders for every attribute name and value, so no DynamoDB reserved word can break an expression."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def n(self, attribute: str) -> str:
        for placeholder, name in self.names.items():
            if name == attribute:
                return placeholder
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def v(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def assign(self, values: Mapping[str, Any], keep_first: Mapping[str, Any] | None = None) -> list[str]:
        """`name = value` clauses, and `name = if_not_exists(name, value)` for those whose first value is kept."""
        clauses = [f"{self.n(k)} = {self.v(v)}" for k, v in clean(values).items()]
        clauses += [
            f"{self.n(k)} = if_not_exists({self.n(k)}, {self.v(v)})" for k, v in clean(keep_first or {}).items()
        ]
        return clauses

    def append(self, attribute: str, entry: Mapping[str, Any]) -> str:
        name = self.n(attribute)
        return f"{name} = list_append(if_not_exists({name}, {self.v([])}), {self.v([clean(entry)])})"

    def transition(
        self,
        status: Status,
        reason: str,
        now: str,
        extra: Mapping[str, Any],
        keep_first: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Clauses that move an object version to `status`: its reason, times and `extra` (its history, and its entry
        in the open-state index, are the ledger's: `ObjectStore._transition`)."""
        return self.assign({"status": status.value, "reason": reason, "status_at": now, **extra}, keep_first)

    def kwargs(self, update: str, condition: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {"UpdateExpression": update, "ExpressionAttributeNames": self.names}
        if self.values:  # DynamoDB refuses an empty value map
            result["ExpressionAttributeValues"] = item_values(self.values)
        if condition:
            result["ConditionExpression"] = condition
        return result
