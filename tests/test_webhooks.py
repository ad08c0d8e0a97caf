"""Signed webhooks against a real HTTP receiver on 127.0.0.1: every request's signature and
timestamp checked independently, exactly one delivery per change of health (none for an
unchanged one, one into UNKNOWN), retries with exponential backoff after a 500 and after a
timeout, and the delivery log the user sees."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from callmeter.probes.testing import ScriptedExecutor, failed, measured
from callmeter.probes.webhooks import RetryPolicy, check_url, sign, verify
from callmeter.server.testing import FakeClock, Harness

NOW = 1_800_000_000.0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float  # the receiver's clock when it came


@dataclass
class Receiver:
    """A real HTTP server: answers each POST with the next scripted status (default 200),
    optionally after a delay."""

    server: ThreadingHTTPServer
    answers: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    clock: Callable[[], float] = time.time

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/callmeter"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            me = state["receiver"]
            body = self.rfile.read(int(self.headers["Content-Length"]))
            delay = me.delays.pop(0) if me.delays else 0.0
            status = me.answers.pop(0) if me.answers else 200
            me.received.append(Received(dict(self.headers.items()), body, status, me.clock()))
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = found = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def h(tmp_path: Path, receiver: Receiver) -> Iterator[Harness]:
    harness = Harness(tmp_path / "hooks.duckdb", clock=FakeClock(NOW))
    receiver.clock = harness.clock
    try:
        yield harness
    finally:
        harness.app.state.probes.close(timeout_s=5)
        harness.close()


def independent_check(secret: str, request: Received, now: float) -> int:
    """The receiver's side, written from the documentation, not with callmeter's verify():
    header ``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``; returns t."""
    parts = dict(part.split("=", 1) for part in request.headers["Callmeter-Signature"].split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert abs(now - timestamp) <= 300, "a stale timestamp is a replay"
    return timestamp


def test_one_signed_delivery_per_change_with_retries(h: Harness, receiver: Receiver) -> None:
    scheduler = h.app.state.probes
    executor = ScriptedExecutor()
    scheduler.executor = executor
    dispatcher = scheduler.webhooks
    dispatcher.policy = RetryPolicy(initial_s=30, factor=2, max_s=600, max_attempts=5)
    pid = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "Voice"})[
        "project_id"
    ]
    probe = h.ok("POST", f"/projects/{pid}/probes", h.owner,
                 json={"name": "pbx-eu", "enabled": False})["probe_id"]  # fmt: skip
    hook = h.ok("POST", f"/probes/{probe}/webhooks", h.owner, json={"url": receiver.url})
    secret = hook["secret"]
    plan = [  # (measurement, health after it)
        (measured(mos=4.4, loss_percent=0.0), "HEALTHY"),  # UNKNOWN -> HEALTHY
        (measured(mos=4.3, loss_percent=0.1), "HEALTHY"),  # unchanged: nothing sent
        (measured(mos=3.9, loss_percent=0.5), "DEGRADED"),
        (measured(mos=3.8, loss_percent=0.9), "DEGRADED"),  # unchanged
        (measured(mos=3.2, loss_percent=7.5), "UNHEALTHY"),
        (failed(), "UNKNOWN"),  # into UNKNOWN is a change too
        (measured(mos=4.4, loss_percent=0.0), "HEALTHY"),
    ]
    receiver.answers = [200, 500, 500, 200]  # the second change is refused twice
    for measurement, _ in plan:
        executor.push(measurement)
        h.ok("POST", f"/probes/{probe}/trigger", h.owner)
        scheduler.run_pending()
        dispatcher.deliver_due()
        h.clock.advance(60)
    # the refused one: retried 30 s after the first failure, 60 s after the second
    for _ in range(3):
        h.clock.advance(60)
        dispatcher.deliver_due()

    changes = [(a, b) for (_, a), (_, b) in zip([(None, "UNKNOWN"), *plan], plan, strict=False)
               if a != b]  # fmt: skip
    assert len(changes) == 5
    bodies = [json.loads(r.body) for r in receiver.received]
    delivered = [b for b, r in zip(bodies, receiver.received, strict=True) if r.answered == 200]
    assert [(b["previous_state"], b["current_state"]) for b in delivered] == changes
    assert len({b["event_id"] for b in delivered}) == 5  # exactly one delivery per change
    assert len(receiver.received) == 7  # five changes, two retries
    for request in receiver.received:
        timestamp = independent_check(secret, request, request.at)
        assert verify(secret, request.headers["Callmeter-Signature"], request.body,
                      now=timestamp)  # fmt: skip
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Callmeter-Event"] == "probe.status_changed"
        assert request.headers["User-Agent"].startswith("callmeter-webhooks/")
    # the retries carry the same delivery and body, signed afresh with their own time
    retried = [r for r in receiver.received if json.loads(r.body)["current_state"] == "DEGRADED"]
    assert [r.answered for r in retried] == [500, 500, 200]
    assert len({r.headers["Callmeter-Delivery"] for r in retried}) == 1
    assert len({r.body for r in retried}) == 1
    stamps = [int(r.headers["Callmeter-Signature"].split(",")[0][2:]) for r in retried]
    assert stamps[1] - stamps[0] >= 30 and stamps[2] - stamps[1] >= 60

    unhealthy = next(b for b in delivered if b["current_state"] == "UNHEALTHY")
    execution = h.ok("GET", f"/probes/{probe}/executions?health=UNHEALTHY", h.owner)[0]
    assert unhealthy == {
        "event": "probe.status_changed",
        "event_id": unhealthy["event_id"],
        "occurred_at": unhealthy["occurred_at"],
        "probe": {"id": probe, "name": "pbx-eu"},
        "project": {"id": pid, "name": "Voice"},
        "previous_state": "DEGRADED",
        "current_state": "UNHEALTHY",
        "breached_metrics": [
            {"metric": "mos", "label": "MOS", "unit": "MOS", "value": 3.2, "level": "critical",
             "threshold": 3.6, "warning": 4.0, "critical": 3.6},
            {"metric": "loss_percent", "label": "Packet loss", "unit": "%", "value": 7.5,
             "level": "critical", "threshold": 5.0, "warning": 1.0, "critical": 5.0},
        ],
        "execution": {
            "id": execution["execution_id"],
            "run_id": execution["run_id"],
            "url": f"http://testserver/api/v1/probe-executions/{execution['execution_id']}",
        },
    }  # fmt: skip
    assert unhealthy["occurred_at"] == execution["finished_at"]

    log = h.ok("GET", f"/webhooks/{hook['webhook_id']}/deliveries", h.owner)
    assert [d["status"] for d in log] == ["DELIVERED"] * 5
    refused = next(d for d in log if d["body"]["current_state"] == "DEGRADED")
    assert refused["attempts"] == 3
    assert [a["status_code"] for a in refused["log"]] == [500, 500, 200]
    assert refused["log"][0]["error"] == "answered 500 Internal Server Error"
    assert refused["log"][2]["error"] is None
    assert [a["status_code"] for d in log if d is not refused for a in d["log"]] == [200] * 4


def test_a_receiver_that_never_accepts_gets_the_backoff_then_failed(
    h: Harness, receiver: Receiver
) -> None:
    scheduler = h.app.state.probes
    scheduler.executor = ScriptedExecutor()
    dispatcher = scheduler.webhooks
    dispatcher.policy = RetryPolicy(initial_s=10, factor=3, max_s=60, max_attempts=4,
                                    timeout_s=0.5)  # fmt: skip
    pid = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "P"})[
        "project_id"
    ]
    probe = h.ok("POST", f"/projects/{pid}/probes", h.owner, json={"name": "p"})["probe_id"]
    hook = h.ok("POST", f"/probes/{probe}/webhooks", h.owner, json={"url": receiver.url})
    receiver.answers = [503, 404, 500, 500, 200]
    receiver.delays = [0.0, 0.0, 2.0]  # the third attempt times out
    scheduler.run_pending()
    sent_at = []
    for _ in range(40):  # 5 s steps: attempts are due at +0, +10, +40, +100 (capped at 60)
        if dispatcher.deliver_due():
            sent_at.append(h.clock.now - NOW)
        h.clock.advance(5)
    assert sent_at == [0.0, 10.0, 40.0, 100.0]
    [delivery] = h.ok("GET", f"/webhooks/{hook['webhook_id']}/deliveries", h.owner)
    assert delivery["status"] == "FAILED" and delivery["attempts"] == 4
    assert delivery["next_attempt_at"] is None
    assert [(a["status_code"], a["error"]) for a in delivery["log"]] == [
        (503, "answered 503 Service Unavailable"),
        (404, "answered 404 Not Found"),
        (None, "no answer within 0.5 s"),
        (500, "answered 500 Internal Server Error"),
    ]
    assert len(receiver.received) == 4


def test_a_test_event_and_a_disabled_webhook(h: Harness, receiver: Receiver) -> None:
    scheduler = h.app.state.probes
    scheduler.executor = ScriptedExecutor()
    pid = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "P"})[
        "project_id"
    ]
    probe = h.ok("POST", f"/projects/{pid}/probes", h.owner, json={"name": "p"})["probe_id"]
    hook = h.ok("POST", f"/probes/{probe}/webhooks", h.owner,
                json={"url": receiver.url, "enabled": False})  # fmt: skip
    scheduler.run_pending()  # UNKNOWN -> HEALTHY, but the webhook is disabled
    assert scheduler.webhooks.deliver_due() == 0
    queued = h.ok("POST", f"/webhooks/{hook['webhook_id']}/test", h.owner)
    assert queued["status"] == "PENDING" and queued["event"] == "webhook.test"
    assert scheduler.webhooks.deliver_due() == 1
    [request] = receiver.received
    independent_check(hook["secret"], request, request.at)
    assert json.loads(request.body)["probe"] == {"id": probe, "name": "p"}
    assert request.headers["Callmeter-Event"] == "webhook.test"


def test_urls_must_be_https_except_to_loopback() -> None:
    for url in ("https://hooks.example.com/x", "http://127.0.0.1:8000/h", "http://[::1]/h",
                "http://localhost:9/h", "http://127.10.0.3/h"):  # fmt: skip
        assert check_url(url) == url
    for url, why in (
        ("http://hooks.example.com/x", "webhooks need https://"),
        ("http://10.0.0.1/x", "webhooks need https://"),
        ("ftp://example.com/x", "give an https:// URL"),
        ("https:///nohost", "give an https:// URL"),
        ("https://example.com:99999/x", "bad port"),
    ):
        with pytest.raises(ValueError, match=why):
            check_url(url)


def test_signatures_reject_tampering_and_replays() -> None:
    body = b'{"event":"probe.status_changed"}'
    header = sign("whsec_s3cret", 1_800_000_000, body)
    assert header == (
        "t=1800000000,v1="
        + hmac.new(b"whsec_s3cret", b"1800000000." + body, hashlib.sha256).hexdigest()
    )
    assert verify("whsec_s3cret", header, body, now=1_800_000_100)
    assert not verify("whsec_s3cret", header, body + b" ", now=1_800_000_000)  # tampered
    assert not verify("whsec_other", header, body, now=1_800_000_000)  # wrong secret
    assert not verify("whsec_s3cret", header, body, now=1_800_000_301)  # replayed later
    moved = header.replace("t=1800000000", "t=1800000300")  # a fresh-looking timestamp
    assert not verify("whsec_s3cret", moved, body, now=1_800_000_300)
    assert not verify("whsec_s3cret", "garbage", body, now=1_800_000_000)
