"""Read-only queries over the results store, returning DataFrames (DESIGN.md "analysis"): the
REST API, the Streamlit pages and the notebooks call the same functions. No streamlit, no ray.
"""

from analysis.runs import (
    CALL_OUTCOMES,
    LATENESS_P99_LIMIT_MS,
    LOOP_LAG_P99_LIMIT_MS,
    LOWER_IS_WORSE,
    SUCCESS_OUTCOMES,
    export,
    generator_health,
    outcomes,
    per_endpoint,
    per_group,
    percentiles,
    run_overview,
    run_summary,
    runs,
    timeseries,
    worst_endpoints,
)

__all__ = [
    "CALL_OUTCOMES",
    "LATENESS_P99_LIMIT_MS",
    "LOOP_LAG_P99_LIMIT_MS",
    "LOWER_IS_WORSE",
    "SUCCESS_OUTCOMES",
    "export",
    "generator_health",
    "outcomes",
    "per_endpoint",
    "per_group",
    "percentiles",
    "run_overview",
    "run_summary",
    "runs",
    "timeseries",
    "worst_endpoints",
]
