"""Serialized access to the one DuckDB connection the server owns.

DuckDB connections are not safe to share between threads, and FastAPI runs sync handlers in a
thread pool, so every statement goes through :meth:`Database.transaction`, which holds the
store's lock for the whole transaction. Never call a :class:`~callmeter.store.Store` method
while holding a transaction: the store takes the same lock.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import duckdb

__all__ = ["Database", "Row", "Tx", "new_id"]

Row = dict[str, Any]
T = TypeVar("T")


def new_id(prefix: str) -> str:
    """A random identifier such as ``prj_3f9a1c2b7d4e8f60`` (64 bits, URL-safe)."""
    return f"{prefix}_{secrets.token_hex(8)}"


class Tx:
    """One transaction's statements; rows come back as dicts keyed by column name."""

    __slots__ = ("_con",)

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The raw connection, for the analysis functions (read only, inside the lock)."""
        return self._con

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._con.execute(sql, list(params))

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._con.execute(sql, list(params))
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._con.execute(sql, list(params)).fetchone()
        return None if row is None else row[0]


class Database:
    """The server's handle on the store's connection and lock."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        self.connection = connection
        self.lock: AbstractContextManager[Any] = lock if lock is not None else threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """Hold the lock, BEGIN, and COMMIT (or ROLLBACK when the block raises)."""
        with self.lock:
            self.connection.execute("BEGIN TRANSACTION")
            try:
                yield Tx(self.connection)
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    def read(self, query: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run ``query(connection)`` (an analysis function) under the lock."""
        with self.lock:
            return query(self.connection)
