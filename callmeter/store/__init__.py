"""The results store: the schema (generated from the metric catalog), the Arrow batch builders
the shards use, and the one writer.

``callmeter.store.batches`` and ``callmeter.store.schema`` import no duckdb: the shard processes
import them. The writer's names are loaded on first use, so importing the package for its
builders does not load duckdb either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from callmeter.store.batches import (
    ShardBatch,
    endpoints_table,
    events_table,
    health_table,
    metrics_table,
    shard_batch,
    trace_table,
)
from callmeter.store.schema import SCHEMA_VERSION, RunStatus, SchemaVersionError, migrate

if TYPE_CHECKING:
    from callmeter.store.writer import ReadOnlyStoreError, Store

__all__ = [
    "SCHEMA_VERSION",
    "ReadOnlyStoreError",
    "RunStatus",
    "SchemaVersionError",
    "ShardBatch",
    "Store",
    "endpoints_table",
    "events_table",
    "health_table",
    "metrics_table",
    "migrate",
    "shard_batch",
    "trace_table",
]

_WRITER_NAMES = frozenset({"ReadOnlyStoreError", "Store"})


def __getattr__(name: str) -> Any:
    if name in _WRITER_NAMES:
        from callmeter.store import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
