"""Metric rows per second into the results store, beside DuckDB's own ceiling, in the same run.

    python benchmarks/store_write.py [--rows 200000] [--repeat 3]

Full-width metric rows (every ``send``/``receive`` column of the catalog filled) are pushed
from one thread into a fresh database file:

* ``ceiling``: one ``INSERT INTO metrics SELECT * FROM <one Arrow table of all rows>``, the
  fastest DuckDB takes these rows;
* ``Store.append``, 1k- and 10k-row batches: the writer as the driver uses it (metrics
  coalesced, ``FLUSH_ROWS`` / ``FLUSH_DELAY_S`` defaults);
* ``Store.append, flush_rows=0``: every append its own INSERT and commit.

Every figure includes the final flush and a CHECKPOINT (the rows are in the file, not only in
the WAL), and is the best of ``--repeat`` runs (the VM stalls now and then). A last line
measures the shard side: ``metrics_table`` building 1k rows from dicts. A benchmark script,
not a test: it prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callmeter.metrics import Direction, keys  # noqa: E402
from callmeter.store import ShardBatch, metrics_table  # noqa: E402
from callmeter.store.batches import METRICS_SCHEMA  # noqa: E402
from callmeter.store.writer import Store  # noqa: E402

RUN_ID = "bench-run"
T0 = 1_700_000_000.0


def full_width_table(rows: int, seed: int = 1) -> pa.Table:
    """``rows`` metric rows, every column filled: endpoints of 2 rows (send, receive) per second."""
    rng = np.random.default_rng(seed)
    index = np.arange(rows)
    endpoint = (index // 2) % 1000
    second = index // 2000 + 1
    fixed: dict[str, Any] = {
        "run_id": pa.array([RUN_ID] * rows, pa.string()),
        "endpoint_id": pa.array(endpoint, pa.int32()),
        "ts": pa.array(((T0 + second) * 1e6).astype("int64")).cast(pa.timestamp("us")),
        "t_s": pa.array(second + rng.random(rows)),
        "second": pa.array(second, pa.int32()),
        "direction": pa.array(np.where(index % 2, "send", "receive")),
        "interval_s": pa.array(np.ones(rows)),
    }
    columns = []
    for field in METRICS_SCHEMA:
        if field.name in fixed:
            columns.append(fixed[field.name])
        elif pa.types.is_integer(field.type):
            columns.append(pa.array(rng.integers(0, 1000, rows), field.type))
        elif pa.types.is_floating(field.type):
            columns.append(pa.array(rng.random(rows) * 100.0))
        else:
            columns.append(pa.array(["SUCCESS"] * rows, field.type))
    return pa.Table.from_arrays(columns, schema=METRICS_SCHEMA)


def fresh_store(directory: Path, name: str, **options: Any) -> Store:
    path = directory / f"{name}.duckdb"
    for stale in (path, path.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    store = Store(path, **options)
    store.create_run(RUN_ID, "bench", "{}", 1000, 0.9)
    return store


def ceiling(directory: Path, table: pa.Table) -> float:
    store = fresh_store(directory, "ceiling")
    con = store.connection
    start = time.perf_counter()
    con.register("everything", table)
    con.execute("INSERT INTO metrics SELECT * FROM everything")
    con.execute("CHECKPOINT")
    elapsed = time.perf_counter() - start
    store.close()
    return float(table.num_rows / elapsed)


def appends(directory: Path, table: pa.Table, batch_rows: int, **options: Any) -> float:
    batches = [
        ShardBatch(RUN_ID, 0, seq, metrics=table.slice(offset, batch_rows))
        for seq, offset in enumerate(range(0, table.num_rows, batch_rows))
    ]
    store = fresh_store(directory, f"append-{batch_rows}", **options)
    start = time.perf_counter()
    written = sum(store.append(batch) for batch in batches)
    store.flush()
    store.connection.execute("CHECKPOINT")
    elapsed = time.perf_counter() - start
    [(stored,)] = store.connection.execute("SELECT count(*) FROM metrics").fetchall()
    store.close()
    assert written == stored == table.num_rows, (written, stored)
    return float(table.num_rows / elapsed)


def builder_rows_per_s(repeat: int) -> float:
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(2)
    for i in range(1000):
        direction: Direction = "send" if i % 2 else "receive"
        row: dict[str, Any] = {"endpoint_id": i // 2, "ts": T0 + 1, "t_s": 1.0, "second": 1,
                               "direction": direction, "interval_s": 1.0}  # fmt: skip
        for key in keys(direction):
            row[key] = "SUCCESS" if key == "call_result" else float(rng.random())
        rows.append(row)
    best = min(_timed(lambda: metrics_table(RUN_ID, rows)) for _ in range(repeat * 3))
    return len(rows) / best


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = full_width_table(args.rows)
    print(f"{args.rows:,} rows x {table.num_columns} columns, best of {args.repeat}, one thread")
    with tempfile.TemporaryDirectory(prefix="store-bench-") as name:
        directory = Path(name)
        cases: list[tuple[str, Callable[[], float]]] = [
            ("ceiling: one INSERT of all rows", lambda: ceiling(directory, table)),
            ("Store.append, 1k-row batches", lambda: appends(directory, table, 1_000)),
            ("Store.append, 10k-row batches", lambda: appends(directory, table, 10_000)),
            ("Store.append, 1k, flush_rows=0",
             lambda: appends(directory, table, 1_000, flush_rows=0)),
            ("Store.append, 10k, flush_rows=0",
             lambda: appends(directory, table, 10_000, flush_rows=0)),
        ]  # fmt: skip
        figures = {label: max(run() for _ in range(args.repeat)) for label, run in cases}
    top = figures["ceiling: one INSERT of all rows"]
    print(f"{'case':<36} {'rows/s':>10} {'of ceiling':>11}")
    for label, rate in figures.items():
        print(f"{label:<36} {rate:>10,.0f} {rate / top:>10.0%}")
    print(f"{'metrics_table (shard side), 1k dicts':<36} {builder_rows_per_s(args.repeat):>10,.0f}")


if __name__ == "__main__":
    main()
