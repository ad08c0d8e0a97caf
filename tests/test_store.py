"""The results store: schema from the catalog, migrations, Arrow builders, and the one writer."""

from __future__ import annotations

import datetime
import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from callmeter.metrics import catalog, keys
from callmeter.store import (
    SCHEMA_VERSION,
    ReadOnlyStoreError,
    SchemaVersionError,
    ShardBatch,
    Store,
    endpoints_table,
    events_table,
    health_table,
    metrics_table,
    migrate,
    shard_batch,
    trace_table,
)
from callmeter.store.batches import sip_summary
from callmeter.store.schema import CALL_KEYS, TABLES, schema_version

RUN = "run-1"
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
    b"From: <sip:alice@example.com>;tag=a1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"i:   call-1@127.0.0.1  \r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Subject: caf\xe9\r\n"
    b"Content-Length: 0\r\n\r\n"
)
TRYING = b"SIP/2.0 100 Trying\r\nCall-ID: call-1@127.0.0.1\r\nCSeq: 1 INVITE\r\n\r\n"


def utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).replace(tzinfo=None)


def metric_row(endpoint_id: int, second: int, direction: str, **values: Any) -> dict[str, Any]:
    return {
        "endpoint_id": endpoint_id,
        "ts": T0 + second,
        "t_s": second + 0.25,
        "second": second,
        "direction": direction,
        "interval_s": 1.0,
        **values,
    }


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
        " ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [row[0] for row in rows]


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    [(value,)] = con.execute(sql, params or []).fetchall()
    return value


@pytest.fixture
def store() -> Any:
    with Store(":memory:", flush_rows=0) as opened:
        opened.create_run(RUN, "smoke", '{"name": "smoke"}', 4, 0.9)
        yield opened


# -- schema and migrations ------------------------------------------------------------------
def test_fresh_database_has_every_table_and_the_catalog_columns() -> None:
    con = duckdb.connect()
    assert migrate(con) == 0
    assert schema_version(con) == SCHEMA_VERSION == 1
    for table, cols in TABLES.items():
        assert columns(con, table) == [name for name, _ in cols]
    send_receive = {m.key for m in catalog() if m.direction in ("send", "receive")}
    assert set(columns(con, "metrics")[7:]) == send_receive
    assert set(columns(con, "endpoints")[14:]) == set(CALL_KEYS)
    assert {"setup_time_ms", "post_dial_delay_ms", "final_status_code", "call_result"} <= set(
        CALL_KEYS
    )
    assert "event_loop_lag_ms" not in CALL_KEYS  # a shard gauge, not an endpoint's value
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'metrics'"
        ).fetchall()
    )
    assert (types["mos"], types["packets"], types["ts"], types["second"]) == (
        "DOUBLE",
        "BIGINT",
        "TIMESTAMP",
        "INTEGER",
    )


def test_migrate_is_idempotent_and_adds_new_catalog_columns(tmp_path: Path) -> None:
    path = tmp_path / "r.duckdb"
    with Store(path):
        pass
    con = duckdb.connect(str(path))
    con.execute("DROP INDEX metrics_by_run_id_endpoint_id")  # DuckDB drops no indexed column
    con.execute("ALTER TABLE metrics DROP COLUMN burst_ratio")  # as if the catalog grew since
    assert migrate(con) == 1
    assert migrate(con) == 1
    assert "burst_ratio" in columns(con, "metrics")
    assert scalar(con, "SELECT count(*) FROM schema_version") == 1


def test_a_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "newer.duckdb"
    with Store(path):
        pass
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version VALUES (2, now()::TIMESTAMP)")
    con.close()
    expected = "schema version 2, newer than this callmeter's 1: open it with a newer callmeter"
    with pytest.raises(SchemaVersionError, match=expected):
        Store(path)
    with pytest.raises(SchemaVersionError, match=expected):
        Store.open_readonly(path)


def test_read_only_open_refuses_an_unmigrated_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(SchemaVersionError, match=r"version 0, older .* open it once read-write"):
        Store.open_readonly(path)


# -- builders -------------------------------------------------------------------------------
def test_metrics_table_fills_missing_keys_with_null_and_rounds_integer_columns() -> None:
    table = metrics_table(
        RUN,
        [
            metric_row(7, 1, "receive", mos=4.2, packets=50, packets_lost=2),
            metric_row(7, 1, "send", packets=49, frame_size_avg_bytes=120.6),
        ],
    )
    assert table.num_rows == 2
    assert table.num_columns == 7 + len(set(keys("send")) | set(keys("receive")))
    first, second = table.to_pylist()
    assert first["run_id"] == RUN and first["ts"] == utc(T0 + 1) and first["t_s"] == 1.25
    assert (first["mos"], first["packets"], first["packets_lost"], first["jitter_ms"]) == (
        4.2,
        50,
        2,
        None,
    )
    assert second["frame_size_avg_bytes"] == 121 and second["mos"] is None


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [metric_row(1, 1, "receive", mos=4.0, moss=4.0, jitter=1.0)],
            "unknown receive metric keys: jitter, moss",
        ),
        (
            [metric_row(1, 1, "send", packets_expected=50)],
            "unknown send metric keys: packets_expected",
        ),
        ([metric_row(1, 1, "call")], "direction must be 'send' or 'receive', not 'call'"),
        ([{**metric_row(1, 1, "send"), "endpoint_id": None}], "rows without endpoint_id"),
        ([metric_row(1, 1, "send", packets="many")], "column 'packets': "),
    ],
)
def test_metrics_table_names_what_is_wrong(rows: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics_table(RUN, rows)


def test_sip_summary_reads_first_line_call_id_and_cseq_without_parsing() -> None:
    assert sip_summary(INVITE) == (
        "INVITE sip:bob@example.com SIP/2.0",
        "call-1@127.0.0.1",
        "1 INVITE",
    )
    body_only = b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\nCSeq: in the body\r\n"
    assert sip_summary(body_only) == ("SIP/2.0 200 OK", "x", None)
    assert sip_summary(b"garbage") == ("garbage", None, None)


def test_trace_table_keeps_the_whole_message_as_latin1_and_the_peer_as_host_port() -> None:
    table = trace_table(
        RUN,
        [
            {
                "endpoint_id": 3,
                "at": T0,
                "direction": "out",
                "peer": ("127.0.0.1", 5060),
                "message": INVITE,
            },
            {
                "endpoint_id": 3,
                "at": T0 + 0.5,
                "direction": "in",
                "peer": ("::1", 5062),
                "message": TRYING,
            },
        ],
    )
    out, back = table.to_pylist()
    assert out["message"].encode("latin-1") == INVITE and "Subject: café" in out["message"]
    assert (out["peer"], out["call_id"], out["cseq"]) == (
        "127.0.0.1:5060",
        "call-1@127.0.0.1",
        "1 INVITE",
    )
    assert (back["peer"], back["first_line"], back["at"]) == (
        "[::1]:5062",
        "SIP/2.0 100 Trying",
        utc(T0 + 0.5),
    )
    with pytest.raises(ValueError, match=r"direction must be one of \['in', 'out'\]"):
        trace_table(RUN, [{"endpoint_id": 3, "at": T0, "direction": "up", "message": b""}])


def test_event_health_and_endpoint_builders_refuse_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown event keys: when"):
        events_table(RUN, [{"endpoint_id": 1, "when": T0, "kind": "phase"}])
    with pytest.raises(ValueError, match=r"kind must be one of \['outcome', 'phase'\]"):
        events_table(RUN, [{"endpoint_id": 1, "at": T0, "kind": "other"}])
    with pytest.raises(ValueError, match="unknown shard health keys: loop_lag"):
        health_table(RUN, [{"shard_id": 0, "ts": T0, "loop_lag": 1.0}])
    with pytest.raises(ValueError, match=r"phase must be one of .*, not \['Closed'\]"):
        endpoints_table(RUN, [{"endpoint_id": 1, "phase": "Closed"}])
    with pytest.raises(ValueError, match=r"role must be one of .*, not \['uac'\]"):
        endpoints_table(RUN, [{"endpoint_id": 1, "role": "uac"}])
    with pytest.raises(ValueError, match=r"outcome must be one of .*, not \['WON'\]"):
        events_table(RUN, [{"endpoint_id": 1, "at": T0, "kind": "outcome", "outcome": "WON"}])
    with pytest.raises(ValueError, match="unknown endpoint keys: mos"):
        endpoints_table(RUN, [{"endpoint_id": 1, "mos": 4.0}])


def test_endpoints_table_merges_rows_of_one_endpoint_later_non_null_winning() -> None:
    table = endpoints_table(
        RUN,
        [
            {"endpoint_id": 1, "group_name": "a", "phase": "INITIALIZING"},
            {"endpoint_id": 2, "group_name": "b"},
            {"endpoint_id": 1, "phase": "CLOSED", "group_name": None, "setup_time_ms": 80.0},
        ],
    )
    rows = {row["endpoint_id"]: row for row in table.to_pylist()}
    assert len(rows) == 2
    assert (rows[1]["group_name"], rows[1]["phase"], rows[1]["setup_time_ms"]) == (
        "a",
        "CLOSED",
        80.0,
    )


def test_a_shard_batch_counts_rows_and_survives_pickling() -> None:
    rows = SimpleNamespace(
        endpoints=[{"endpoint_id": 1, "group_name": "g"}],
        events=[
            {
                "endpoint_id": 1,
                "at": T0,
                "kind": "phase",
                "phase": "REGISTERED",
                "previous": "INITIALIZING",
            }
        ],
        metrics=[metric_row(1, 1, "send", packets=50), metric_row(1, 1, "receive")],
        trace=[],
        health=[{"shard_id": 4, "ts": T0, "endpoints_active": 1}],
    )
    batch = shard_batch(RUN, 4, 0, rows)
    assert batch.rows() == 5 and batch.trace is None
    assert set(batch.tables()) == {"metrics", "endpoints", "endpoint_events", "shard_health"}
    copy = pickle.loads(pickle.dumps(batch))
    assert copy.rows() == 5 and copy.metrics.equals(batch.metrics)
    assert shard_batch(RUN, 4, 1, None).rows() == 0


def test_the_builders_do_not_import_duckdb() -> None:
    code = "import sys, callmeter.store.batches, callmeter.store; print('duckdb' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# -- the writer -----------------------------------------------------------------------------
def full_batch(seq: int = 0, shard_id: int = 0) -> ShardBatch:
    return ShardBatch(
        RUN,
        shard_id,
        seq,
        metrics=metrics_table(
            RUN,
            [
                metric_row(1, 1, "receive", mos=4.1, jitter_ms=2.5),
                metric_row(1, 1, "send", packets=50, rtt_ms=40.0),
                metric_row(2, 1, "receive", mos=3.9),
            ],
        ),
        endpoints=endpoints_table(
            RUN,
            [
                {
                    "endpoint_id": 1,
                    "group_name": "g",
                    "role": "caller",
                    "shard_id": shard_id,
                    "node_id": "n1",
                    "host": "h1",
                    "pid": 42,
                    "phase": "INITIALIZING",
                },
                {"endpoint_id": 2, "group_name": "g", "role": "callee", "phase": "INITIALIZING"},
            ],
        ),
        events=events_table(
            RUN,
            [
                {
                    "endpoint_id": 1,
                    "at": T0 + 0.5,
                    "kind": "phase",
                    "phase": "REGISTERED",
                    "previous": "INITIALIZING",
                }
            ],
        ),
        trace=trace_table(
            RUN,
            [
                {
                    "endpoint_id": 1,
                    "at": T0,
                    "direction": "out",
                    "peer": "127.0.0.1:5060",
                    "message": INVITE,
                }
            ],
        ),
        health=health_table(
            RUN,
            [
                {
                    "shard_id": shard_id,
                    "ts": T0 + 1,
                    "endpoints_active": 2,
                    "loop_lag_ms_max": 3.5,
                    "cpu_percent": 12.0,
                }
            ],
        ),
    )


def test_append_writes_every_table_and_reads_back_the_values(store: Store) -> None:
    assert store.append(full_batch()) == 3 + 2 + 1 + 1 + 1
    con = store.connection
    counts = {
        t: scalar(con, f"SELECT count(*) FROM {t} WHERE run_id = ?", [RUN])
        for t in ("metrics", "endpoints", "endpoint_events", "sip_trace", "shard_health")
    }
    assert counts == {
        "metrics": 3,
        "endpoints": 2,
        "endpoint_events": 1,
        "sip_trace": 1,
        "shard_health": 1,
    }
    assert con.execute(
        "SELECT endpoint_id, direction, ts, mos, jitter_ms, packets, rtt_ms FROM metrics"
        " ORDER BY endpoint_id, direction"
    ).fetchall() == [
        (1, "receive", utc(T0 + 1), 4.1, 2.5, None, None),
        (1, "send", utc(T0 + 1), None, None, 50, 40.0),
        (2, "receive", utc(T0 + 1), 3.9, None, None, None),
    ]
    assert con.execute(
        "SELECT role, shard_id, node_id, host, pid, phase FROM endpoints WHERE endpoint_id = 1"
    ).fetchall() == [("caller", 0, "n1", "h1", 42, "INITIALIZING")]
    assert con.execute('SELECT "at", kind, phase, previous FROM endpoint_events').fetchall() == [
        (utc(T0 + 0.5), "phase", "REGISTERED", "INITIALIZING")
    ]
    assert con.execute("SELECT first_line, call_id, cseq FROM sip_trace").fetchall() == [
        ("INVITE sip:bob@example.com SIP/2.0", "call-1@127.0.0.1", "1 INVITE")
    ]
    assert con.execute("SELECT ts, loop_lag_ms_max, cpu_percent FROM shard_health").fetchall() == [
        (utc(T0 + 1), 3.5, 12.0)
    ]


def test_a_batch_delivered_twice_is_written_once(store: Store) -> None:
    assert store.append(full_batch(seq=5)) == 8
    assert store.append(full_batch(seq=5)) == 0
    assert scalar(store.connection, "SELECT count(*) FROM metrics") == 3


def test_a_rejected_batch_writes_nothing(store: Store) -> None:
    repeated = pa.concat_tables([endpoints_table(RUN, [{"endpoint_id": 1}])] * 2)
    batch = ShardBatch(
        RUN,
        0,
        0,
        endpoints=repeated,
        events=events_table(RUN, [{"endpoint_id": 1, "at": T0, "kind": "phase"}]),
    )
    with pytest.raises(ValueError, match="repeats an endpoint_id"):
        store.append(batch)
    assert scalar(store.connection, "SELECT count(*) FROM endpoint_events") == 0


def test_a_later_partial_endpoint_row_never_erases_known_values(store: Store) -> None:
    def send(seq: int, *rows: dict[str, Any]) -> None:
        store.append(ShardBatch(RUN, 0, seq, endpoints=endpoints_table(RUN, list(rows))))

    send(
        0,
        {
            "endpoint_id": 1,
            "group_name": "g",
            "username": "u1",
            "role": "caller",
            "shard_id": 0,
            "node_id": "n",
            "host": "h",
            "pid": 7,
            "phase": "INITIALIZING",
        },
    )
    send(1, {"endpoint_id": 1, "phase": "INCALL", "setup_time_ms": 120.0})
    send(
        2,
        {
            "endpoint_id": 1,
            "phase": "CLOSED",
            "outcome": "SUCCESS",
            "outcome_reason": "ok",
            "outcome_status": 200,
            "final_status_code": 200,
            "call_result": "SUCCESS",
        },
    )
    send(
        3,
        {
            "endpoint_id": 1,
            "phase": "RINGING",
            "outcome": "TIMEOUT",
            "outcome_reason": "late",
            "outcome_status": 408,
        },
    )
    row = store.connection.execute(
        "SELECT group_name, username, role, shard_id, node_id, host, pid, phase, outcome,"
        " outcome_reason, outcome_status, setup_time_ms, final_status_code, call_result"
        " FROM endpoints"
    ).fetchall()
    assert row == [
        ("g", "u1", "caller", 0, "n", "h", 7, "CLOSED", "SUCCESS", "ok", 200, 120.0, 200, "SUCCESS")
    ]


def test_mark_endpoints_decides_only_the_undecided(store: Store) -> None:
    store.append(
        ShardBatch(
            RUN,
            0,
            0,
            endpoints=endpoints_table(
                RUN,
                [
                    {
                        "endpoint_id": 1,
                        "phase": "CLOSED",
                        "outcome": "SUCCESS",
                        "call_result": "SUCCESS",
                    },
                    {"endpoint_id": 2, "phase": "INCALL"},
                    {"endpoint_id": 3, "phase": "CLOSED"},
                ],
            ),
        )
    )
    assert store.mark_endpoints(RUN, [1, 2, 3, 4, 2], "OSERROR", "shard 0 died") == 3
    rows = store.connection.execute(
        "SELECT endpoint_id, phase, outcome, outcome_reason, call_result FROM endpoints"
        " ORDER BY endpoint_id"
    ).fetchall()
    assert rows == [
        (1, "CLOSED", "SUCCESS", None, "SUCCESS"),
        (2, "CLOSED", "OSERROR", "shard 0 died", "ERROR"),
        (3, "CLOSED", "OSERROR", "shard 0 died", "ERROR"),
        (4, "CLOSED", "OSERROR", "shard 0 died", "ERROR"),
    ]
    events = store.connection.execute(
        "SELECT endpoint_id, kind, phase, previous, outcome FROM endpoint_events ORDER BY ALL"
    ).fetchall()
    assert events == [
        (2, "outcome", None, None, "OSERROR"),
        (2, "phase", "CLOSED", "INCALL", None),
        (3, "outcome", None, None, "OSERROR"),
        (4, "outcome", None, None, "OSERROR"),
        (4, "phase", "CLOSED", None, None),
    ]
    assert store.mark_endpoints(RUN, [1, 2, 3, 4], "OSERROR", "again") == 0


def test_concurrent_appends_from_threads_lose_nothing() -> None:
    threads, batches, rows = 6, 20, 50
    with Store(":memory:", flush_rows=200, flush_delay_s=3600.0) as store:

        def push(shard_id: int) -> None:
            for seq in range(batches):
                metric_rows = [
                    metric_row(shard_id * 1000 + i, seq + 1, "receive", mos=4.0)
                    for i in range(rows)
                ]
                health = [{"shard_id": shard_id, "ts": T0 + seq}]
                store.append(
                    ShardBatch(
                        RUN,
                        shard_id,
                        seq,
                        metrics=metrics_table(RUN, metric_rows),
                        health=health_table(RUN, health),
                    )
                )

        workers = [threading.Thread(target=push, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        con = store.connection
        assert scalar(con, "SELECT count(*) FROM metrics") == threads * batches * rows
        assert scalar(con, "SELECT count(DISTINCT (endpoint_id, second)) FROM metrics") == (
            threads * batches * rows
        )
        assert scalar(con, "SELECT count(*) FROM shard_health") == threads * batches


def test_metric_rows_are_coalesced_until_flush_rows_or_any_other_call() -> None:
    with Store(":memory:", flush_rows=100, flush_delay_s=3600.0) as store:
        store.create_run(RUN, "t", "{}", 1, 0.9)

        def push(seq: int, n: int) -> int:
            rows = [metric_row(seq, i + 1, "receive") for i in range(n)]
            return store.append(ShardBatch(RUN, 0, seq, metrics=metrics_table(RUN, rows)))

        assert push(0, 60) == 60
        assert store.flush() == 60  # was pending
        assert push(1, 60) == 60 and push(2, 60) == 60  # 120 >= 100: written
        assert store.flush() == 0
        push(3, 10)
        store.set_status(RUN, "RUNNING")  # any other write flushes first
        assert store.flush() == 0
        assert scalar(store.connection, "SELECT count(*) FROM metrics") == 190


def test_a_failed_run_keeps_everything_appended(tmp_path: Path) -> None:
    path = tmp_path / "failed.duckdb"
    with Store(path) as store:  # default coalescing
        store.create_run(RUN, "t", "{}", 2, 0.9)
        store.set_status(RUN, "RUNNING")
        store.append(full_batch())
        store.set_status(RUN, "FAILED", "shard 0 died")
    with Store.open_readonly(path) as reopened:
        con = reopened.connection
        assert scalar(con, "SELECT count(*) FROM metrics") == 3
        assert scalar(con, "SELECT count(*) FROM endpoints") == 2
        [(status, reason, started, ended)] = con.execute(
            "SELECT status, reason, started_at, ended_at FROM runs"
        ).fetchall()
        assert (status, reason) == ("FAILED", "shard 0 died") and started <= ended
        with pytest.raises(ReadOnlyStoreError, match="open read-only"):
            reopened.append(full_batch(seq=1))


def test_run_status_times_and_rules(store: Store) -> None:
    con = store.connection
    assert scalar(con, "SELECT started_at IS NULL AND ended_at IS NULL FROM runs")
    store.set_status(RUN, "RUNNING")
    [(started,)] = con.execute("SELECT started_at FROM runs").fetchall()
    store.set_status(RUN, "STOPPING")
    store.set_status(RUN, "RUNNING")  # started_at is the first start
    store.set_status(RUN, "COMPLETED")
    [(status, again, ended)] = con.execute(
        "SELECT status, started_at, ended_at FROM runs"
    ).fetchall()
    assert (status, again) == ("COMPLETED", started) and ended >= started
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs((now - ended).total_seconds()) < 60  # stored as UTC
    with pytest.raises(ValueError, match="is COMPLETED: it cannot become RUNNING"):
        store.set_status(RUN, "RUNNING")
    with pytest.raises(KeyError, match="no run 'nope'"):
        store.set_status("nope", "RUNNING")
    with pytest.raises(ValueError, match="'LOST' is not a valid RunStatus"):
        store.set_status(RUN, "LOST")


def test_create_run_stores_the_platform_ids_and_refuses_a_duplicate(store: Store) -> None:
    store.create_run(
        "run-2",
        "t",
        {"name": "t", "loss": float("nan")},
        10,
        0.95,
        status="QUEUED",
        organization_id="org",
        triggered_by="ci",
    )
    row = store.connection.execute(
        "SELECT test, status, endpoints, success_threshold, organization_id, project_id,"
        " triggered_by FROM runs WHERE run_id = 'run-2'"
    ).fetchall()
    assert row == [('{"name": "t", "loss": null}', "QUEUED", 10, 0.95, "org", None, "ci")]
    assert store.has_run("run-2") and not store.has_run("run-3")
    with pytest.raises(ValueError, match="run 'run-2' already exists"):
        store.create_run("run-2", "t", "{}", 1, 0.9)
    with pytest.raises(ValueError, match="unknown run fields: team"):
        store.create_run("run-3", "t", "{}", 1, 0.9, team="x")


def test_set_summary_stores_json_with_nan_as_null(store: Store) -> None:
    store.set_summary(RUN, {"success_rate": 0.75, "mos_avg": float("nan"), "outcomes": {"A": 1}})
    text = scalar(store.connection, "SELECT summary FROM runs")
    assert json.loads(text) == {"success_rate": 0.75, "mos_avg": None, "outcomes": {"A": 1}}


def test_a_closed_store_refuses_writes_and_close_is_idempotent() -> None:
    store = Store(":memory:")
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match="is closed"):
        store.create_run(RUN, "t", "{}", 1, 0.9)


def test_a_half_read_result_on_the_shared_connection_does_not_block_appends(store: Store) -> None:
    store.append(full_batch(seq=0))
    store.connection.execute("SELECT * FROM metrics").fetchone()  # DuckDB 2.0 keeps it open
    assert store.append(full_batch(seq=1)) == 8
