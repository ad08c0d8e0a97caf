"""Real media end to end on loopback: two endpoints call through the built-in registrar with
RTP both ways; seeded impairment shows up in the metrics exactly, and tshark agrees."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from callmeter.callmedia import MediaOptions, MetricRow
from callmeter.endpoint import Endpoint
from callmeter.media.impairment import ImpairmentProfile
from callmeter.metrics import by_key
from callmeter.registrar import RunningRegistrar
from callmeter.sip.events import CallAnswered, CallEnded, Registered
from callmeter.sip.useragent import UserAgentConfig
from callmeter.transport import run
from tests.aio import poll, sipp_exit
from tests.peers import Baresip, Sipp, Tshark

pytestmark = [pytest.mark.slow]


def total(rows: list[MetricRow], direction: str, key: str) -> float:
    return sum(row.get(key) or 0 for row in rows if row["direction"] == direction)


async def media_call(
    caller_media: MediaOptions,
    callee_media: MediaOptions,
    hold_s: float,
    before_call: Callable[[list[Endpoint]], Awaitable[None]] | None = None,
) -> tuple[Endpoint, Endpoint, str]:
    """Register two endpoints with media, call, hold, hang up; both returned still open.
    ``before_call`` runs once both are registered (e.g. to start a capture on their ports)."""
    async with RunningRegistrar(accounts=2) as registrar:
        domain = registrar.config.domain
        endpoints = []
        for account, media in zip(registrar.accounts, (caller_media, callee_media), strict=True):
            config = UserAgentConfig(
                account.username, domain, registrar.address, password=account.password
            )
            endpoint = await Endpoint.open(config, media=media)
            endpoint.register()
            assert isinstance(await endpoint.wait_for(Registered), Registered)
            endpoints.append(endpoint)
        caller, callee = endpoints
        if before_call is not None:
            await before_call(endpoints)
        call_id = caller.call(f"sip:{callee.ua.config.username}@{domain}")
        assert isinstance(await caller.wait_for(CallAnswered, call_id=call_id), CallAnswered)
        await asyncio.sleep(hold_s)  # the call is up: media flows for its duration
        caller.hangup(call_id)
        await caller.wait_for(CallEnded, call_id=call_id)
        await callee.wait_for(CallEnded, call_id=call_id)
        return caller, callee, call_id


def test_clean_call_has_media_both_ways_and_catalog_keys() -> None:
    async def scenario() -> None:
        caller, callee, call_id = await media_call(MediaOptions(), MediaOptions(), 3.0)
        try:
            for endpoint in (caller, callee):
                assert endpoint.media is not None
                rows = endpoint.media.rows_of(call_id)
                received = total(rows, "receive", "packets")
                assert 140 <= received <= 160  # 3 s of 20 ms packets
                assert total(rows, "receive", "packets_lost") == 0
                mos = [r["mos"] for r in rows if r["direction"] == "receive" and r.get("mos")]
                assert mos and min(mos) > 4.2
                for direction in ("send", "receive"):  # the short tail joins the 3rd second
                    seconds = [r["second"] for r in rows if r["direction"] == direction]
                    assert seconds == [1, 2, 3]
                for row in rows:
                    extra = {"call_id", "t_s", "direction", "second", "interval_s", "at"}
                    for key in set(row) - extra:
                        by_key(key, row["direction"])  # every value is a catalog metric
        finally:
            await caller.close()
            await callee.close()

    run(scenario())


def test_seeded_loss_is_measured_exactly_and_lowers_mos() -> None:
    async def scenario() -> None:
        lossy = MediaOptions(send_impairment=ImpairmentProfile(loss_percent=10), impairment_seed=7)
        caller, callee, call_id = await media_call(lossy, MediaOptions(), 4.0)
        try:
            assert caller.media is not None and callee.media is not None
            rows = callee.media.rows_of(call_id)
            lost = total(rows, "receive", "packets_lost")
            session_rows = caller.media.rows_of(call_id)
            sent = total(session_rows, "send", "packets")
            assert sent >= 190
            assert 0.05 * sent <= lost <= 0.15 * sent  # 10 % offered, seeded
            clean = [r["mos"] for r in caller.media.rows_of(call_id)
                     if r["direction"] == "receive" and r.get("mos")]  # fmt: skip
            impaired = [r["mos"] for r in rows if r["direction"] == "receive" and r.get("mos")]
            assert sum(impaired) / len(impaired) < sum(clean) / len(clean) - 0.3
        finally:
            await caller.close()
            await callee.close()

    run(scenario())


@pytest.mark.interop
def test_loss_and_jitter_agree_with_tshark() -> None:
    captures: list[Tshark] = []

    async def start_capture(endpoints: list[Endpoint]) -> None:
        ports = [e.media.socket.local_address[1] for e in endpoints if e.media is not None]
        bpf = " or ".join(f"udp port {port}" for port in ports)
        captures.append(await asyncio.to_thread(Tshark.start, bpf))

    async def scenario() -> tuple[list[MetricRow], int]:
        lossy = MediaOptions(send_impairment=ImpairmentProfile(loss_percent=5), impairment_seed=3)
        caller, callee, call_id = await media_call(
            lossy, MediaOptions(), 4.0, before_call=start_capture
        )
        assert callee.media is not None
        port = callee.media.socket.local_address[1]
        rows = callee.media.rows_of(call_id)
        for endpoint in (caller, callee):
            await endpoint.close()
        return rows, port

    try:
        rows, port = run(scenario())
        (capture,) = captures
        capture.stop()
        streams = [s for s in capture.rtp_streams([port]) if s.dst_port == port]
    finally:
        for capture in captures:
            capture.stop()
    assert len(streams) == 1, streams
    stream = streams[0]
    # Packets still in flight at hang-up reach the wire but not our last row.
    assert 0 <= stream.packets - total(rows, "receive", "packets") <= 2
    assert abs(total(rows, "receive", "packets_lost") - stream.lost) <= 1
    assert stream.lost >= 5  # the seeded 5 % loss really happened on the wire
    ours = max(r["jitter_ms"] for r in rows if r["direction"] == "receive")
    assert abs(ours - stream.max_jitter_ms) < 3.0  # loop-time vs kernel arrival stamps


@pytest.mark.interop
def test_sipp_uac_pcap_stream_is_measured_without_false_loss(tmp_path: Path) -> None:
    """SIPp plays its PCMA capture (30 ms packets, then RFC 4733 DTMF) to our answering
    endpoint: every packet is counted, nothing is called lost, jitter stays small."""
    (tmp_path / "pcap").symlink_to("/usr/share/sip-tester")  # uac_pcap reads pcap/g711a.pcap

    async def scenario() -> list[MetricRow]:
        config = UserAgentConfig("service", "127.0.0.1", ("127.0.0.1", 9))
        callee = await Endpoint.open(config, media=MediaOptions(codecs=("PCMA", "PCMU")))
        host, port = callee.ua.local_addr
        try:
            args = ["-sn", "uac_pcap", f"{host}:{port}", "-m", "1", "-s", "service"]
            with Sipp.start(args, workdir=tmp_path) as sipp:
                assert await sipp_exit(sipp, 40) == 0, sipp.log()
            await callee.wait_for(CallEnded)
            assert callee.media is not None
            return list(callee.media.rows)
        finally:
            await callee.close()

    rows = [r for r in run(scenario()) if r["direction"] == "receive"]
    audio = [r for r in rows if r.get("mos") is not None]
    assert total(rows, "receive", "packets") >= 200  # ~8 s of 30 ms packets, plus DTMF
    assert total(rows, "receive", "packets_lost") <= 0  # duplicates (DTMF end packets) only
    assert total(rows, "receive", "packets_dtmf") > 0
    assert max(r["jitter_ms"] for r in rows) < 5.0
    assert min(r["mos"] for r in audio) > 4.2


@pytest.mark.interop
def test_media_both_ways_with_baresip_playing_a_wav() -> None:
    """Our endpoint calls baresip (registered at our registrar, answering automatically and
    playing a tone WAV): we receive its stream cleanly, and its RTCP reports our stream back."""

    async def scenario() -> list[MetricRow]:
        async with RunningRegistrar(accounts=2) as registrar:
            host, port = registrar.address
            ours, theirs = registrar.accounts
            domain = registrar.config.domain
            baresip = await asyncio.to_thread(
                Baresip.start, theirs.username, theirs.password, f"{host}:{port}"
            )
            with baresip:
                aor = f"sip:{theirs.username}@{domain}"
                await poll(lambda: registrar.registrar.location.lookup(aor, 0.0), 10, "baresip")
                config = UserAgentConfig(
                    ours.username, domain, (host, port), password=ours.password
                )
                caller = await Endpoint.open(config, media=MediaOptions())
                try:
                    caller.register()
                    await caller.wait_for(Registered)
                    call_id = caller.call(aor)
                    assert isinstance(
                        await caller.wait_for(CallAnswered, call_id=call_id), CallAnswered
                    )
                    await asyncio.sleep(6.5)  # baresip's first RTCP report comes after ~5 s
                    caller.hangup(call_id)
                    await caller.wait_for(CallEnded, call_id=call_id)
                    assert caller.media is not None
                    return caller.media.rows_of(call_id)
                finally:
                    await caller.close()

    rows = run(scenario())
    received = total(rows, "receive", "packets")
    assert 300 <= received <= 340  # 6.5 s of 20 ms packets
    assert total(rows, "receive", "packets_lost") == 0
    assert min(r["mos"] for r in rows if r["direction"] == "receive" and r.get("mos")) > 4.2
    reported = [r for r in rows if r["direction"] == "send" and r.get("jitter_ms") is not None]
    assert reported, "baresip's RTCP receiver reports reached us"
    assert all(r["loss_percent"] == 0.0 for r in reported)


def test_rtt_from_rtcp_matches_an_added_fixed_delay() -> None:
    async def scenario() -> list[MetricRow]:
        delayed = MediaOptions(send_impairment=ImpairmentProfile(delay_ms=40))
        # RTCP reports come every 5 s, randomised (RFC 3550 A.7): by 10 s an SR of ours has
        # surely been answered by a report of the peer.
        caller, callee, call_id = await media_call(delayed, delayed, 10.0)
        try:
            assert caller.media is not None
            return caller.media.rows_of(call_id)
        finally:
            await caller.close()
            await callee.close()

    rtts = [r["rtt_ms"] for r in run(scenario()) if r["direction"] == "send" and r.get("rtt_ms")]
    assert rtts, "an RTCP report with LSR/DLSR came back"
    assert all(78.0 <= rtt <= 130.0 for rtt in rtts), rtts  # 40 ms each way plus loop time
