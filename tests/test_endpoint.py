"""Endpoints on real loopback sockets: garbage to a live user agent, the demo and the CLI."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from callmeter.callmedia import MediaOptions
from callmeter.cli import main
from callmeter.demo import run_demo
from callmeter.endpoint import Endpoint
from callmeter.media.impairment import ImpairmentProfile
from callmeter.sip.events import CallAnswered, CallEnded, MalformedMessageReceived
from callmeter.sip.useragent import UserAgentConfig
from callmeter.transport import run
from tests.aio import poll

GARBAGE = [
    b"",
    b"\r\n\r\n",  # a keep-alive, not garbage: ignored, not counted
    b"\xff\xfe\x00garbage",
    b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKo\r\n"
    b'From: <sip:b@127.0.0.1>;tag=1\r\nTo: "unterminated <sip:a@127.0.0.1>\r\nCall-ID: q\r\n'
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    b"SIP/2.0 999999 Huge\r\n\r\n",
]


def test_garbage_to_a_live_user_agent_is_counted_answered_and_survived() -> None:
    async def scenario() -> None:
        callee = await Endpoint.open(UserAgentConfig("bob", "127.0.0.1", ("127.0.0.1", 9)))
        caller = await Endpoint.open(UserAgentConfig("alice", "127.0.0.1", callee.ua.local_addr))
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        probe.setblocking(False)
        try:
            for datagram in GARBAGE:
                probe.sendto(datagram, callee.ua.local_addr)
            await poll(lambda: callee.ua.counters["malformed"] == 3, 5, "3 malformed counted")
            answer = await asyncio.get_running_loop().sock_recv(probe, 65535)
            assert answer.startswith(b"SIP/2.0 400 To: unterminated quoted string")
            errors = [e for e in callee.events if isinstance(e, MalformedMessageReceived)]
            assert [e.answered for e in errors] == [None, 400, None]
            assert [e.data[:4] for e in callee.ua.trace][:1] == [b"\xff\xfe\x00g"]
            host, port = callee.ua.local_addr
            call_id = caller.call(f"sip:bob@{host}:{port}")
            assert isinstance(await caller.wait_for(CallAnswered, call_id=call_id), CallAnswered)
            caller.hangup(call_id)
            assert isinstance(await callee.wait_for(CallEnded, call_id=call_id), CallEnded)
            assert callee.transport.stats.handler_errors == 0
        finally:
            probe.close()
            await caller.close()
            await callee.close()

    run(scenario())


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_demo_registers_and_completes_every_call(transport: str) -> None:
    report = run(run_demo(pairs=2, hold_s=0.2, ring_time_s=0.1, transport=transport))
    assert report.ok, report
    assert report.registrations_ok == 4 and len(report.calls) == 2
    for call in report.calls:
        assert call.status == 200 and call.timing is not None
        assert call.timing.ringing is not None and call.timing.answered is not None
        assert call.timing.duration_s is not None and call.timing.duration_s >= 0.2


def test_cli_demo_prints_the_calls(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--pairs", "1", "--hold", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "2 registered, 0 failed" in out and "answered" in out


def test_cli_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--transport", "carrier-pigeon"])
    assert exit_info.value.code == 2


def test_cli_registrar_serves_writes_credentials_and_stops_on_sigterm(tmp_path: Path) -> None:
    credentials = tmp_path / "accounts.csv"
    process = subprocess.Popen(
        [sys.executable, "-m", "callmeter.cli", "registrar", "--port", "0", "--accounts", "2",
         "--credentials", str(credentials)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        assert "listening on udp:127.0.0.1:" in lines[1]
        assert credentials.read_text().splitlines()[0] == "username,password,domain"
        assert len(credentials.read_text().splitlines()) == 3
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0 and "stopped" in out


def test_demo_with_media_reports_quality_and_loss_lowers_it() -> None:
    clean = run(run_demo(pairs=1, hold_s=1.0, ring_time_s=0.0, media=MediaOptions()))
    lossy_media = MediaOptions(send_impairment=ImpairmentProfile(loss_percent=10))
    lossy = run(run_demo(pairs=1, hold_s=1.0, ring_time_s=0.0, media=lossy_media))
    assert clean.ok and lossy.ok
    (clean_call,), (lossy_call,) = clean.calls, lossy.calls
    assert clean_call.quality is not None and lossy_call.quality is not None
    assert clean_call.quality.packets >= 45 and clean_call.quality.lost == 0
    assert lossy_call.quality.lost > 0
    assert lossy_call.quality.mos < clean_call.quality.mos
