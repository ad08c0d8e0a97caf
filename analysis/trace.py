"""One endpoint up close: its SIP trace, the ladder diagram drawn from it, and its own
per-second series, send and receive apart.

The ``sip_trace`` table holds every SIP message an endpoint sent (``out``) or received
(``in``), with the peer's ``host:port``, the first line, Call-ID and CSeq (the shard keeps at
most its last ``TRACE_PER_ENDPOINT`` messages per endpoint, so a long call with many
re-registrations may start mid-way). Rows are ordered by time, then by the order the writer
appended them (``rowid``): two messages in the same microsecond keep the order they were
traced in.

A ladder diagram (the "arrow chart" of RFC 3665) has one vertical line per participant,
here the endpoint and each peer address it talked to, in order of first appearance, and one
arrow per message from sender to receiver, top to bottom in time. :func:`ladder` builds it
from a trace frame, so it works the same on rows from the database and on rows fetched over
the REST API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import duckdb
import pandas as pd

from analysis.runs import Direction, _check_metrics, _quote

__all__ = [
    "LADDER_COLUMNS",
    "TRACE_COLUMNS",
    "Ladder",
    "endpoint_timeseries",
    "ladder",
    "sip_trace",
]

TRACE_COLUMNS: Final = (
    "seq", "at", "t_ms", "direction", "peer", "kind", "method", "status_code", "first_line",
    "call_id", "cseq", "message",
)  # fmt: skip
LADDER_COLUMNS: Final = (
    "seq", "t_ms", "source", "target", "source_index", "target_index", "label", "kind",
    "method", "status_code", "first_line", "call_id", "cseq",
)  # fmt: skip


def _known_endpoint(con: duckdb.DuckDBPyConnection, run_id: str, endpoint_id: int) -> None:
    """KeyError unless the run exists and has the endpoint (or trace rows of it)."""
    [(runs,)] = con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchall()
    if not runs:
        raise KeyError(f"no run {run_id!r}")
    [(rows,)] = con.execute(
        "SELECT (SELECT count(*) FROM endpoints WHERE run_id = $r AND endpoint_id = $e)"
        " + (SELECT count(*) FROM sip_trace WHERE run_id = $r AND endpoint_id = $e)",
        {"r": run_id, "e": endpoint_id},
    ).fetchall()
    if not rows:
        raise KeyError(f"run {run_id!r} has no endpoint {endpoint_id}")


def sip_trace(con: duckdb.DuckDBPyConnection, run_id: str, endpoint_id: int) -> pd.DataFrame:
    """Every SIP message of one endpoint, in order: ``seq`` (0-based), ``at``, ``t_ms``
    (milliseconds since the endpoint's first traced message), ``direction`` (``out``: sent,
    ``in``: received), ``peer``, ``kind`` (``request``/``response``), ``method`` (of the
    request, or of the request a response answers, from its CSeq), ``status_code`` (responses
    only), ``first_line``, ``call_id``, ``cseq`` and the whole ``message``. KeyError for an
    unknown run or endpoint; an endpoint with nothing traced gives an empty frame."""
    _known_endpoint(con, run_id, endpoint_id)
    sql = r"""
        SELECT (row_number() OVER (ORDER BY "at", rowid) - 1)::BIGINT AS seq, "at",
            date_diff('microsecond', min("at") OVER (), "at") / 1000.0 AS t_ms,
            direction, peer,
            CASE WHEN first_line LIKE 'SIP/2.0 %' THEN 'response' ELSE 'request' END AS kind,
            CASE WHEN first_line LIKE 'SIP/2.0 %'
                 THEN nullif(upper(split_part(trim(cseq), ' ', 2)), '')
                 ELSE split_part(first_line, ' ', 1) END AS method,
            TRY_CAST(nullif(regexp_extract(first_line, '^SIP/2\.0 ([0-9]{3})', 1), '')
                     AS INTEGER) AS status_code,
            first_line, call_id, cseq, message
        FROM sip_trace WHERE run_id = $run_id AND endpoint_id = $endpoint_id
        ORDER BY seq"""
    frame = con.execute(sql, {"run_id": run_id, "endpoint_id": endpoint_id}).df()
    frame["status_code"] = frame["status_code"].astype("Int64")
    return frame


@dataclass(frozen=True, slots=True)
class Ladder:
    """A ladder diagram: ``participants`` left to right (the endpoint first), and ``arrows``
    top to bottom (columns ``LADDER_COLUMNS``; ``source_index``/``target_index`` index
    ``participants``)."""

    participants: tuple[str, ...]
    arrows: pd.DataFrame

    def __len__(self) -> int:
        return len(self.arrows)


def _label(row: Any) -> str:
    """What an arrow says: the method of a request, ``status reason`` of a response."""
    first = str(row["first_line"] or "")
    if row["kind"] == "response":
        return first.removeprefix("SIP/2.0 ").strip() or first
    return str(row["method"] or first.split(" ", 1)[0])


def ladder(trace: pd.DataFrame, endpoint: str = "endpoint") -> Ladder:
    """The ladder diagram of a :func:`sip_trace` frame (or the same records fetched over the
    API: ``t_ms``, ``direction``, ``peer``, ``kind``, ``method``, ``status_code``,
    ``first_line``, ``call_id``, ``cseq`` are used). ``endpoint`` names the traced endpoint's
    line; a message without a peer is drawn to or from ``"(unknown peer)"``."""
    peers: list[str] = []
    for peer in trace.get("peer", pd.Series(dtype=object)):
        name = "(unknown peer)" if peer is None or pd.isna(peer) else str(peer)
        if name not in peers:
            peers.append(name)
    participants = (endpoint, *peers)
    index = {name: i for i, name in enumerate(participants)}
    rows = []
    for position, row in enumerate(trace.to_dict("records")):
        peer = row.get("peer")
        peer_name = "(unknown peer)" if peer is None or pd.isna(peer) else str(peer)
        outgoing = row["direction"] == "out"
        source, target = (endpoint, peer_name) if outgoing else (peer_name, endpoint)
        status = row.get("status_code")
        rows.append({
            "seq": int(row.get("seq", position)),
            "t_ms": float(row["t_ms"]) if row.get("t_ms") is not None else float("nan"),
            "source": source, "target": target,
            "source_index": index[source], "target_index": index[target],
            "label": _label(row), "kind": row.get("kind"), "method": row.get("method"),
            "status_code": None if status is None or pd.isna(status) else int(status),
            "first_line": row.get("first_line"), "call_id": row.get("call_id"),
            "cseq": row.get("cseq"),
        })  # fmt: skip
    arrows = pd.DataFrame(rows, columns=list(LADDER_COLUMNS))
    arrows["status_code"] = arrows["status_code"].astype("Int64")
    return Ladder(participants, arrows)


def endpoint_timeseries(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    endpoint_id: int,
    metrics: Sequence[str],
    direction: Direction | None = None,
) -> pd.DataFrame:
    """One endpoint's per-second rows: ``run_second``, ``t_s``, ``second`` (1-based within the
    call's media), ``direction`` and each metric (catalog keys; ``ValueError`` for others),
    sorted by time and direction (``send`` and ``receive`` apart). KeyError for an unknown run
    or endpoint."""
    _check_metrics(list(metrics), direction)
    _known_endpoint(con, run_id, endpoint_id)
    values = ", ".join(_quote(m) for m in metrics)
    sql = f"""
        SELECT floor(t_s)::BIGINT AS run_second, t_s, second, direction, {values}
        FROM metrics
        WHERE run_id = $run_id AND endpoint_id = $endpoint_id
          AND ($direction IS NULL OR direction = $direction)
        ORDER BY t_s, direction"""
    params = {"run_id": run_id, "endpoint_id": endpoint_id, "direction": direction}
    return con.execute(sql, params).df()
