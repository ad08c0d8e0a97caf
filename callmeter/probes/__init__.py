"""Probes: one real call on a schedule, judged against thresholds, alerting on change, published
on status pages (DESIGN.md "Probe").

- :mod:`~callmeter.probes.models`: the probe configuration, health states, API bodies;
- :mod:`~callmeter.probes.evaluation`: measurements + thresholds -> health (pure);
- :mod:`~callmeter.probes.executor`: a probe as a one-caller test, run on Ray and measured;
- :mod:`~callmeter.probes.scheduler`: slots, catch-up, one execution per probe at a time,
  restarts; lives in ``callmeter serve``;
- :mod:`~callmeter.probes.webhooks`: signed deliveries on health changes, with retries;
- :mod:`~callmeter.probes.status_page`: the public page (uptime bars, SLA, incidents);
- :mod:`~callmeter.probes.schema` and :mod:`~callmeter.probes.repo`: the tables and their
  storage functions.

The submodules load on use: the models import no database, web or Ray code.
"""

from __future__ import annotations

__all__: list[str] = []
