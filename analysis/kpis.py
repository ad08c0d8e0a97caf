"""RFC 6076 end-to-end SIP performance metrics of a run, and the R budget of its calls.

RFC 6076 ("Basic Telephony SIP End-to-End Performance Metrics") defines its metrics on the
messages a user agent sees. Ours are counted over the run's callers (each places one call):
the **session requests** are the callers' initial INVITEs, i.e. the *attempted calls* of
:mod:`analysis.runs` (outcome SUCCESS, COMPLETED_WITH_WARNINGS, CALL_FAILED,
NEGOTIATION_FAILED, TIMEOUT or TEARDOWN_ERROR). Not requests: callers that never registered
(no INVITE was sent), the generator's own OSERRORs (never blamed on the system under test) and
callers still undecided. The INVITE's final response is the endpoint's ``final_status_code``;
a call with no final response (an INVITE transaction timeout, RFC 3261 17.1.1.2) counts as a
408, the response RFC 3261 8.1.3.1 tells a UAC to assume.

Ratios (percent; NaN when the denominator is 0)
    SER (4.6)   Session Establishment Ratio = INVITEs answered with a 2xx /
                (INVITEs - INVITEs answered with a 3xx) x 100.
    SEER (4.7)  Session Establishment Effectiveness Ratio = INVITEs answered with 200, 480,
                486, 600 or 603 (the callee was reached and decided) / (INVITEs - 3xx) x 100.
                We count every 2xx as the 200.
    ISA (4.8)   Ineffective Session Attempts = INVITEs answered with 408, 500, 503 or 504,
                or not answered at all / INVITEs x 100 (the proxy or server, not the user,
                failed the attempt).
    SCR (4.9)   Session Completion Ratio = sessions completed / INVITEs x 100. Completed: the
                call was answered and ended with a BYE that got its 2xx (outcome SUCCESS or
                COMPLETED_WITH_WARNINGS; the warning is about media, not signalling).

Delays (one value per call or registration; the row gives count, mean, p50, p95, max)
    RRD (4.1)   Registration Request Delay = time of the final 2xx - time of the first
                REGISTER (an authentication challenge and the re-sent REGISTER are inside the
                interval). From ``registration_time_ms`` when the shard stored it, else from
                the SIP trace (first REGISTER sent to the first 2xx received whose CSeq method
                is REGISTER). Every endpoint registers, so callees count too.
    SRD (4.3.1) Session Request Delay of a successful setup = INVITE sent to the first response
                indicating the session's progress to the user: the first 18x
                (``post_dial_delay_ms``), else the 2xx when no 18x came (``setup_time_ms``).
    SRD failed  SRD of a failed setup (4.3.2) = INVITE sent to its final 4xx-6xx response
                (challenges 401/407 that were answered are not final). Only the SIP trace has
                this time: calls whose trace is incomplete are left out.
    SDD (4.4)   Session Disconnect Delay = BYE sent to its 2xx, or to the time-out: the
                ``disconnect_delay_ms`` of the side that hung up (outcome reason "ended by
                local BYE", or a TEARDOWN_ERROR); the other side answers a BYE at once and
                its value would only dilute the figure.
    SDT (4.5.1) Session Duration Time of a successful session = the 2xx of the INVITE to the
                end of the call (``call_duration_s``, callers), in seconds.

What our data cannot give
    RFC 6076 counts every INVITE a UA sends, re-INVITEs and retried INVITEs after a 3xx
    included; we measure the one initial INVITE per caller (and callers follow no redirects,
    so a 3xx is final). Ineffective Registration Attempts (IRA, 4.2) needs the cause of each
    registration failure, which the REGISTRATION_FAILED outcome does not keep apart; the
    failed-session SDT (4.5.2) and hops per request need timers and headers we do not store.
    A failed registration's RRD (to its 4xx-6xx) is not stored. ``registration_time_ms`` is in
    the catalog but not yet written by the shard: RRD comes from the trace, which keeps only
    each endpoint's last messages.

The R budget
    :func:`r_budget` splits the E-model's transmission rating (ITU-T G.107 7.1) into its
    terms, averaged over endpoint-seconds: R = Ro - Is - Id - Ie,eff (+ A, 0 here), with
    Ie,eff = Ie (the codec) + the loss term. It answers "why did MOS drop": the largest
    deduction is the reason.
"""

from __future__ import annotations

from typing import Final

import duckdb
import pandas as pd

from analysis.runs import _ATTEMPTED, SUCCESS_OUTCOMES, Direction, _sql_list
from callmeter.lifecycle import Outcome

__all__ = ["KPI_COLUMNS", "KPI_NAMES", "R_BUDGET_TERMS", "kpis", "r_budget"]

KPI_COLUMNS: Final = (
    "kpi", "name", "section", "value", "unit", "numerator", "denominator", "count", "mean",
    "p50", "p95", "max", "source",
)  # fmt: skip
# kpi -> (name, RFC 6076 section, unit)
KPI_NAMES: Final = {
    "SER": ("Session Establishment Ratio", "4.6", "%"),
    "SEER": ("Session Establishment Effectiveness Ratio", "4.7", "%"),
    "ISA": ("Ineffective Session Attempts", "4.8", "%"),
    "SCR": ("Session Completion Ratio", "4.9", "%"),
    "RRD": ("Registration Request Delay", "4.1", "ms"),
    "SRD": ("Session Request Delay (successful setup)", "4.3.1", "ms"),
    "SRD_FAILED": ("Session Request Delay (failed setup)", "4.3.2", "ms"),
    "SDD": ("Session Disconnect Delay", "4.4", "ms"),
    "SDT": ("Session Duration Time", "4.5.1", "s"),
}
_SOURCES: Final = {
    "SER": "endpoints.final_status_code of the callers",
    "SEER": "endpoints.final_status_code of the callers",
    "ISA": "endpoints.final_status_code and TIMEOUT outcomes of the callers",
    "SCR": "endpoints.outcome of the callers",
    "RRD": "endpoints.registration_time_ms, else sip_trace (REGISTER -> 2xx)",
    "SRD": "endpoints.post_dial_delay_ms, else setup_time_ms (callers answered)",
    "SRD_FAILED": "sip_trace (INVITE -> final 4xx-6xx)",
    "SDD": "endpoints.disconnect_delay_ms of the side that sent the BYE",
    "SDT": "endpoints.call_duration_s (callers answered)",
}
_EFFECTIVE_FAILURES: Final = (480, 486, 600, 603)
_INEFFECTIVE: Final = (408, 500, 503, 504)

# Answered: a 2xx final response; a row without the code falls back on the outcome (a call
# that ended normally or whose BYE failed was answered).
_ANSWERED: Final = (
    "(final_status_code BETWEEN 200 AND 299 OR (final_status_code IS NULL AND outcome IN "
    f"{_sql_list((*SUCCESS_OUTCOMES, Outcome.TEARDOWN_ERROR))}))"
)

_RATIOS_SQL: Final = f"""
    SELECT count(*) AS invites,
        count(*) FILTER (WHERE final_status_code BETWEEN 300 AND 399) AS redirected,
        count(*) FILTER (WHERE {_ANSWERED}) AS answered,
        count(*) FILTER (WHERE {_ANSWERED}
                         OR final_status_code IN {_EFFECTIVE_FAILURES}) AS effective,
        count(*) FILTER (WHERE final_status_code IN {_INEFFECTIVE}
                         OR outcome = 'TIMEOUT') AS ineffective,
        count(*) FILTER (WHERE outcome IN {_sql_list(SUCCESS_OUTCOMES)}) AS completed
    FROM endpoints WHERE run_id = $run_id AND {_ATTEMPTED}"""

_TRACE_TIMES: Final = r"""
    trace AS (
        SELECT endpoint_id, "at", direction, first_line,
            upper(split_part(trim(cseq), ' ', 2)) AS cseq_method,
            TRY_CAST(nullif(regexp_extract(first_line, '^SIP/2\.0 ([0-9]{3})', 1), '')
                     AS INTEGER) AS status
        FROM sip_trace WHERE run_id = $run_id),
    firsts AS (
        SELECT endpoint_id,
            min("at") FILTER (WHERE direction = 'out' AND first_line LIKE 'REGISTER %')
                AS register_at,
            min("at") FILTER (WHERE direction = 'out' AND first_line LIKE 'INVITE %') AS invite_at
        FROM trace GROUP BY endpoint_id),
    traced AS (
        SELECT f.endpoint_id,
            date_diff('microsecond', f.register_at, min(t."at") FILTER (
                WHERE t.direction = 'in' AND t.cseq_method = 'REGISTER'
                  AND t.status BETWEEN 200 AND 299 AND t."at" >= f.register_at)) / 1000.0
                AS rrd_ms,
            date_diff('microsecond', f.invite_at, min(t."at") FILTER (
                WHERE t.direction = 'in' AND t.cseq_method = 'INVITE'
                  AND t.status = e.final_status_code AND t."at" >= f.invite_at)) / 1000.0
                AS srd_failed_ms
        FROM firsts f JOIN trace t USING (endpoint_id)
            LEFT JOIN endpoints e ON e.run_id = $run_id AND e.endpoint_id = f.endpoint_id
        GROUP BY f.endpoint_id, f.register_at, f.invite_at)"""

_DELAYS_SQL: Final = f"""
    WITH {_TRACE_TIMES},
    e AS (SELECT * FROM endpoints WHERE run_id = $run_id),
    samples AS (
        SELECT 'RRD' AS kpi, coalesce(e.registration_time_ms, traced.rrd_ms) AS v
            FROM e FULL OUTER JOIN traced USING (endpoint_id)
        UNION ALL SELECT 'SRD', coalesce(post_dial_delay_ms, setup_time_ms)
            FROM e WHERE {_ATTEMPTED} AND {_ANSWERED}
        UNION ALL SELECT 'SRD_FAILED', traced.srd_failed_ms
            FROM e JOIN traced USING (endpoint_id)
            WHERE {_ATTEMPTED} AND final_status_code BETWEEN 400 AND 699
        UNION ALL SELECT 'SDD', disconnect_delay_ms FROM e
            WHERE outcome = 'TEARDOWN_ERROR' OR outcome_reason LIKE 'ended by local%'
        UNION ALL SELECT 'SDT', call_duration_s FROM e WHERE {_ATTEMPTED} AND {_ANSWERED})
    SELECT kpi, count(v) AS count, avg(v) AS mean, quantile_cont(v, 0.5) AS p50,
        quantile_cont(v, 0.95) AS p95, max(v) AS max
    FROM samples GROUP BY kpi"""


def _percent(numerator: int, denominator: int) -> float:
    return 100.0 * numerator / denominator if denominator else float("nan")


def kpis(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """The RFC 6076 metrics of a run (see the module docstring), one row each, in the order
    SER, SEER, ISA, SCR, RRD, SRD, SRD_FAILED, SDD, SDT: ``kpi``, ``name``, ``section``,
    ``value`` (the ratio in percent, or the mean delay), ``unit``, ``numerator`` and
    ``denominator`` (ratios), ``count``, ``mean``, ``p50``, ``p95``, ``max`` (delays) and
    ``source`` (the data it comes from). KeyError for an unknown run."""
    [(known,)] = con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchall()
    if not known:
        raise KeyError(f"no run {run_id!r}")
    [row] = con.execute(_RATIOS_SQL, {"run_id": run_id}).fetchall()
    invites, redirected, answered, effective, ineffective, completed = (int(v) for v in row)
    established = invites - redirected
    ratios = {
        "SER": (answered, established),
        "SEER": (effective, established),
        "ISA": (ineffective, invites),
        "SCR": (completed, invites),
    }
    delays = {
        str(kpi): rest for kpi, *rest in con.execute(_DELAYS_SQL, {"run_id": run_id}).fetchall()
    }
    records = []
    for kpi, (name, section, unit) in KPI_NAMES.items():
        record: dict[str, object] = dict.fromkeys(KPI_COLUMNS)
        record |= {"kpi": kpi, "name": name, "section": section, "unit": unit,
                   "source": _SOURCES[kpi]}  # fmt: skip
        if kpi in ratios:
            numerator, denominator = ratios[kpi]
            record |= {"numerator": numerator, "denominator": denominator,
                       "value": _percent(numerator, denominator)}  # fmt: skip
        else:
            count, mean, p50, p95, largest = delays.get(kpi, (0, None, None, None, None))
            record |= {"count": int(count), "mean": mean, "p50": p50, "p95": p95,
                       "max": largest, "value": mean}  # fmt: skip
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=list(KPI_COLUMNS))
    for column in ("value", "mean", "p50", "p95", "max"):
        frame[column] = frame[column].astype("float64")
    for column in ("numerator", "denominator", "count"):
        frame[column] = frame[column].astype("Int64")
    return frame


R_BUDGET_TERMS: Final = (
    ("r_ro", "Ro: basic signal-to-noise ratio", 1.0),
    ("r_simultaneous_is", "Is: simultaneous impairment", -1.0),
    ("r_delay_id", "Id: delay impairment", -1.0),
    ("r_codec_ie", "Ie: codec impairment", -1.0),
    ("r_loss_ie", "Ie,eff - Ie: packet loss", -1.0),
)


def r_budget(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    endpoint_id: int | None = None,
    direction: Direction = "receive",
) -> pd.DataFrame:
    """The R budget (ITU-T G.107 7.1) of a run, or of one endpoint, in one direction: one row
    per term in the order Ro, Is, Id, Ie, loss, then R itself: ``term`` (catalog key),
    ``label``, ``value`` (R points, averaged over the endpoint-seconds that have it),
    ``contribution`` (+Ro, minus each impairment, R for the total), ``seconds`` (how many rows
    had it) and ``r_scale_max`` (100 narrowband, 129 wideband). Empty values are NaN (a call
    without media has no budget). KeyError for an unknown run."""
    if direction not in ("send", "receive"):
        raise ValueError(f"direction must be 'send' or 'receive', not {direction!r}")
    [(known,)] = con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchall()
    if not known:
        raise KeyError(f"no run {run_id!r}")
    keys = [key for key, _, _ in R_BUDGET_TERMS] + ["r_factor"]
    values = ", ".join(f"avg({k}) AS {k}, count({k}) AS {k}_n" for k in keys)
    sql = f"""
        SELECT {values}, avg(r_scale_max) AS r_scale_max FROM metrics
        WHERE run_id = $run_id AND direction = $direction
          AND ($endpoint_id IS NULL OR endpoint_id = $endpoint_id)"""
    params = {"run_id": run_id, "direction": direction, "endpoint_id": endpoint_id}
    [row] = con.execute(sql, params).df().to_dict("records")
    records = []
    for key, label, sign in (*R_BUDGET_TERMS, ("r_factor", "R: transmission rating", 1.0)):
        value = row[key]
        contribution = None if value is None or pd.isna(value) else sign * float(value) + 0.0
        records.append({"term": key, "label": label, "value": value,
                        "contribution": contribution, "seconds": int(row[f"{key}_n"]),
                        "r_scale_max": row["r_scale_max"]})  # fmt: skip
    frame = pd.DataFrame.from_records(records)
    for column in ("value", "contribution", "r_scale_max"):
        frame[column] = frame[column].astype("float64")
    return frame
