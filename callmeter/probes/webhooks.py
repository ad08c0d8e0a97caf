"""Signed webhooks: what is sent when a probe's health changes, how it is signed, and the
dispatcher that delivers it with retries.

Theory of operation
-------------------
When an execution moves a probe's health (including into UNKNOWN; never on an unchanged
state), the same transaction that records the evaluation inserts one *delivery* per enabled
webhook of the probe, with the JSON body fixed there (:func:`status_changed_body`). So a change
is delivered exactly once per webhook, whatever restarts happen, and never twice.

The :class:`WebhookDispatcher` sends due deliveries: a POST of the stored body with

- ``Callmeter-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is HMAC-SHA256 with the
  webhook's secret over ``"<t>." + body`` (the timestamp, a dot, then the raw body bytes). A
  receiver recomputes it (:func:`verify`), compares in constant time and rejects a timestamp
  older than a few minutes: a replayed request carries an old ``t``, and changing ``t`` breaks
  the signature. Each attempt is signed afresh with the time it is sent;
- ``Callmeter-Event`` (``probe.status_changed``), ``Callmeter-Delivery`` (the delivery id,
  the same on every retry: receivers deduplicate on it or on the body's ``event_id``).

A 2xx answer delivers it. Anything else (another status, a timeout, a refused connection) is
logged with its status code or error and retried after an exponential backoff
(:class:`RetryPolicy`), until ``max_attempts``; then the delivery is FAILED. Redirects are not
followed (a 3xx is a failure: configure the final URL).

URLs must be HTTPS, except to loopback addresses (``127.0.0.0/8``, ``::1``, ``localhost``) for
tests and local receivers.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from callmeter import __version__
from callmeter.probes import repo
from callmeter.probes.evaluation import Breach
from callmeter.probes.models import Health
from callmeter.server.db import Database, Tx, new_id

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "EVENT_STATUS_CHANGED",
    "EVENT_TEST",
    "SIGNATURE_HEADER",
    "ChangeContext",
    "RetryPolicy",
    "WebhookDispatcher",
    "check_url",
    "enqueue_status_changed",
    "enqueue_test",
    "is_loopback",
    "iso_utc",
    "new_secret",
    "sign",
    "status_changed_body",
    "verify",
]

log = logging.getLogger(__name__)

EVENT_STATUS_CHANGED = "probe.status_changed"
EVENT_TEST = "webhook.test"
SIGNATURE_HEADER = "Callmeter-Signature"
EVENT_HEADER = "Callmeter-Event"
DELIVERY_HEADER = "Callmeter-Delivery"
SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300.0


def new_secret() -> str:
    """A new signing secret (256 random bits), shown once to the user."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """``url`` when a webhook may post to it; ``ValueError`` saying why not."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"url: give an https:// URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError(
            f"url: webhooks need https:// (plain http only to loopback addresses), got {url!r}"
        )
    try:
        parts.port  # noqa: B018  # raises for a bad port
    except ValueError:
        raise ValueError(f"url: bad port in {url!r}") from None
    return url


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Callmeter-Signature`` value: ``t=<timestamp>,v1=<HMAC-SHA256 hex>``."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(
    secret: str, header: str, body: bytes, *, now: float, tolerance_s: float = TOLERANCE_S
) -> bool:
    """What a receiver does: the signature matches and its timestamp is recent."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", ()))


def iso_utc(seconds: float) -> str:
    """Epoch seconds as ISO 8601 UTC with a Z (the payloads' and status pages' timestamps)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ChangeContext:
    """What the body of a ``probe.status_changed`` event names."""

    probe_id: str
    probe_name: str
    project_id: str
    project_name: str
    execution_id: str
    run_id: str | None
    execution_url: str


def status_changed_body(
    context: ChangeContext,
    event_id: str,
    previous: Health,
    current: Health,
    breaches: Sequence[Breach],
    occurred_at: float,
) -> dict[str, Any]:
    return {
        "event": EVENT_STATUS_CHANGED,
        "event_id": event_id,
        "occurred_at": iso_utc(occurred_at),
        "probe": {"id": context.probe_id, "name": context.probe_name},
        "project": {"id": context.project_id, "name": context.project_name},
        "previous_state": str(previous),
        "current_state": str(current),
        "breached_metrics": [b.as_dict() for b in breaches],
        "execution": {
            "id": context.execution_id,
            "run_id": context.run_id,
            "url": context.execution_url,
        },
    }


def _dumps(body: Mapping[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), sort_keys=True, allow_nan=False)


def enqueue_status_changed(
    tx: Tx,
    context: ChangeContext,
    previous: Health,
    current: Health,
    breaches: Sequence[Breach],
    now: float,
) -> list[str]:
    """One delivery per enabled webhook of the probe (inside the evaluation's transaction)."""
    event_id = new_id("evt")
    body = _dumps(status_changed_body(context, event_id, previous, current, breaches, now))
    return [
        repo.insert_delivery(
            tx, hook, EVENT_STATUS_CHANGED, event_id, context.execution_id, body, now
        )
        for hook in repo.list_webhooks(tx, context.probe_id, enabled_only=True)
    ]


def enqueue_test(tx: Tx, webhook_id: str, probe: Mapping[str, str], now: float) -> str:
    """A ``webhook.test`` delivery, to check a receiver and its signature check."""
    hook = repo.get_webhook(tx, webhook_id)
    event_id = new_id("evt")
    body = _dumps({"event": EVENT_TEST, "event_id": event_id, "occurred_at": iso_utc(now),
                   "probe": dict(probe)})  # fmt: skip
    return repo.insert_delivery(tx, hook, EVENT_TEST, event_id, None, body, now)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delay before attempt n+1 after n failed ones: ``initial_s * factor**(n-1)`` up to
    ``max_s``; ``max_attempts`` in all (the defaults span about an hour)."""

    initial_s: float = 30.0
    factor: float = 2.0
    max_s: float = 1800.0
    max_attempts: int = 8
    timeout_s: float = 10.0

    def delay_s(self, failed_attempts: int) -> float:
        return min(self.max_s, self.initial_s * self.factor ** max(0, failed_attempts - 1))


class WebhookDispatcher:
    """Sends due deliveries; a background thread (:meth:`start`) or explicit
    :meth:`deliver_due` calls (tests, with the clock they drive)."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy | None = None,
        http: httpx.Client | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._db = db
        self._clock = clock
        self.policy = policy or RetryPolicy()
        self._http = http  # made on the first delivery
        self._own_http = http is None
        self._poll_interval_s = poll_interval_s
        self._pass = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def deliver_due(self) -> int:
        """Attempt every due delivery once; returns how many were attempted."""
        with self._pass:
            with self._db.transaction() as tx:
                due = repo.due_deliveries(tx, self._clock())
            for row in due:
                if self._closing.is_set():
                    break
                self._attempt(row)
            return len(due)

    def _attempt(self, row: Mapping[str, Any]) -> None:
        delivery_id = row["delivery_id"]
        with self._db.transaction() as tx:
            secret = repo.webhook_secret(tx, row["webhook_id"])
        if secret is None:
            return  # the webhook was deleted meanwhile (its deliveries with it)
        body = row["body"].encode()
        sent_at = self._clock()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, int(sent_at), body),
            EVENT_HEADER: row["event"],
            DELIVERY_HEADER: delivery_id,
        }
        status: int | None = None
        error: str | None = None
        started = time.monotonic()
        try:
            check_url(row["url"])
            response = self._client().post(
                row["url"], content=body, headers=headers, timeout=self.policy.timeout_s
            )
            status = response.status_code
            if not 200 <= status < 300:
                error = f"answered {status} {response.reason_phrase}".strip()
        except ValueError as problem:
            error = str(problem)
        except httpx.TimeoutException:
            error = f"no answer within {self.policy.timeout_s:g} s"
        except httpx.HTTPError as problem:
            error = f"{type(problem).__name__}: {problem}"
        duration_ms = (time.monotonic() - started) * 1000.0
        attempt = int(row["attempts"]) + 1
        delivered = error is None
        next_at = None
        if not delivered and attempt < self.policy.max_attempts:
            next_at = self._clock() + self.policy.delay_s(attempt)
        with self._db.transaction() as tx:
            repo.record_attempt(
                tx, delivery_id, attempt, sent_at, status, error, duration_ms,
                delivered=delivered, next_attempt_at=next_at,
            )  # fmt: skip
        if not delivered:
            log.info("webhook delivery %s attempt %d: %s", delivery_id, attempt, error)

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                follow_redirects=False,
                timeout=self.policy.timeout_s,
                headers={"User-Agent": f"callmeter-webhooks/{__version__}"},
            )
        return self._http

    # -- background thread ---------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._closing.clear()
            self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.policy.timeout_s + 5)
            self._thread = None
        if self._own_http and self._http is not None:
            self._http.close()
            self._http = None

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                self.deliver_due()
            except Exception:  # one bad pass must not end deliveries; the next one retries
                log.exception("webhook delivery pass failed")
            self._wake.wait(self._poll_interval_s)
            self._wake.clear()
