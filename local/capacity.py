"""DynamoDB capacity, as DynamoDB bills it, measured on a boto3 client: every call asks for its consumed capacity
(`ReturnConsumedCapacity=INDEXES`), and the meter adds up write and read units for the table and each index.

DynamoDB Local computes them by the same rules as DynamoDB (item size in 1 KB steps for writes, 4 KB for reads, an index
write per entry put or deleted). It returns nothing for a write whose condition failed, which DynamoDB still bills: the
meter counts those as one write unit each (the least DynamoDB bills; items here stay under 1 KB).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from typing import Any

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"})
READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})


@dataclasses.dataclass
class CapacityMeter:
    """Write and read units consumed through the clients it is attached to, by table and index."""

    write_units: defaultdict[str, float] = dataclasses.field(default_factory=lambda: defaultdict(float))
    read_units: defaultdict[str, float] = dataclasses.field(default_factory=lambda: defaultdict(float))
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def attach(self, client: Any) -> Any:
        """Meter one client's calls; returns the client."""
        self.attach_events(client.meta.events)
        return client

    def attach_events(self, events: Any) -> None:
        """Meter the calls of every client made from a session after this (a boto3 Session's `events`)."""
        events.register("provide-client-params.dynamodb.*", self._ask)
        events.register("after-call.dynamodb.*", self._count)

    @property
    def writes(self) -> float:
        return float(sum(self.write_units.values()))

    @property
    def reads(self) -> float:
        return float(sum(self.read_units.values()))

    def reset(self) -> None:
        with self._lock:
            self.write_units.clear()
            self.read_units.clear()

    def _ask(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in WRITES or model.name in READS:
            params.setdefault("ReturnConsumedCapacity", "INDEXES")

    def _count(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.name
        if name not in WRITES and name not in READS:
            return
        consumed = parsed.get("ConsumedCapacity")
        units = self.write_units if name in WRITES else self.read_units
        with self._lock:
            if consumed is None:
                code = (parsed.get("Error") or {}).get("Code", "")
                if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                    units["table"] += 1.0
                return
            for entry in consumed if isinstance(consumed, list) else [consumed]:
                table = entry.get("Table") or {}
                units["table"] += float(table.get("CapacityUnits") or 0.0)
                for index, used in (entry.get("GlobalSecondaryIndexes") or {}).items():
                    units[index] += float(used.get("CapacityUnits") or 0.0)
                if not table and not entry.get("GlobalSecondaryIndexes"):
                    units["table"] += float(entry.get("CapacityUnits") or 0.0)
