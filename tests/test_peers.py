"""Smoke tests proving each real-peer harness in tests/peers.py works on this machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import (
    Baresip,
    Kamailio,
    PeerError,
    Sipp,
    Tshark,
    free_port,
    peers_installed,
    wait_until,
)

pytestmark = pytest.mark.interop

ACCOUNTS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="module", autouse=True)
def _peers_present() -> None:
    missing = peers_installed()
    if missing:
        pytest.fail(f"peer binaries missing (run scripts/install.sh): {', '.join(missing)}")


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio.start(ACCOUNTS, workdir=tmp_path / "kamailio") as server:
        yield server


def test_free_port_is_free_for_udp_and_tcp_and_spans() -> None:
    port = free_port("udp", span=2)
    assert 1024 <= port < 65535
    for kind in ("udp", "tcp"):
        assert free_port(kind) != 5060


def test_sipp_uac_completes_calls_against_sipp_uas(tmp_path: Path) -> None:
    calls = 20
    with Sipp.uas(workdir=tmp_path / "uas") as uas:
        uac = Sipp.uac(uas.address, calls=calls, rate=100, workdir=tmp_path / "uac")
        with uac:
            assert uac.wait(30) == 0, uac.log()
        assert uac.counter("SuccessfulCall") == calls, uac.log()
        assert uac.counter("FailedCall") == 0, uac.log()
        wait_until(
            lambda: uas.counter("SuccessfulCall") == calls, 15, what="UAS saw every call end"
        )
        assert uas.stop() == 0, uas.log()


def test_sipp_uac_fails_when_nobody_answers(tmp_path: Path) -> None:
    silent_port = free_port("udp")
    uac = Sipp.uac(
        f"127.0.0.1:{silent_port}",
        calls=1,
        workdir=tmp_path,
        extra=["-timeout", "3s", "-timeout_error"],
    )
    with uac:
        assert uac.wait(20) != 0


def test_sipp_registers_with_digest_auth_at_kamailio(kamailio: Kamailio, tmp_path: Path) -> None:
    assert kamailio.contacts("alice") == []
    register = Sipp.register(
        kamailio.address, user="alice", password=ACCOUNTS["alice"], workdir=tmp_path / "ok"
    )
    with register:
        assert register.wait(20) == 0, register.log()
    assert kamailio.contacts("alice") == [f"sip:alice@127.0.0.1:{register.port};transport=UDP"]


def test_kamailio_refuses_a_wrong_password(kamailio: Kamailio, tmp_path: Path) -> None:
    register = Sipp.register(kamailio.address, user="bob", password="wrong", workdir=tmp_path)
    with register:
        assert register.wait(20) != 0
    assert register.counter("FailedUnexpectedMessage") == 1, register.log()
    assert kamailio.contacts("bob") == []


def test_kamailio_proxies_an_authenticated_call_to_a_registered_sipp(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    callee_port = free_port("udp")
    register = Sipp.register(
        kamailio.address,
        user="bob",
        password=ACCOUNTS["bob"],
        port=callee_port,
        workdir=tmp_path / "register",
    )
    with register:
        assert register.wait(20) == 0, register.log()
    assert kamailio.options("carol") == 404
    with Sipp.uas(record_route=True, port=callee_port, workdir=tmp_path / "uas") as uas:
        caller = Sipp.call_with_auth(
            kamailio.address,
            caller="alice",
            password=ACCOUNTS["alice"],
            callee="bob",
            calls=3,
            workdir=tmp_path / "uac",
        )
        with caller:
            assert caller.wait(30) == 0, f"{caller.log()}\n{kamailio.log()}"
        assert caller.counter("SuccessfulCall") == 3
        wait_until(lambda: uas.counter("SuccessfulCall") == 3, 15, what="UAS saw BYEs")


def test_baresip_registers_at_kamailio(kamailio: Kamailio, tmp_path: Path) -> None:
    with Baresip.start(
        "alice", ACCOUNTS["alice"], kamailio.address, workdir=tmp_path / "baresip"
    ) as baresip:
        contacts = kamailio.wait_registered("alice")
        assert any(f"@{baresip.address}" in contact for contact in contacts), contacts
        # End to end: Kamailio finds the contact and baresip itself answers.
        assert wait_until(lambda: kamailio.options("alice") == 200, 10, what="OPTIONS 200")


def test_baresip_with_a_wrong_password_does_not_register(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    with Baresip.start("bob", "wrong", kamailio.address, workdir=tmp_path) as baresip:
        wait_until(lambda: baresip.registration() == "ERR", 10, what="registration refused")
        assert kamailio.contacts("bob") == []


def test_baresip_dials_through_kamailio_to_a_sipp_uas(kamailio: Kamailio, tmp_path: Path) -> None:
    callee_port = free_port("udp")
    register = Sipp.register(
        kamailio.address,
        user="bob",
        password=ACCOUNTS["bob"],
        port=callee_port,
        workdir=tmp_path / "register",
    )
    with register:
        assert register.wait(20) == 0, register.log()
    with (
        Sipp.uas(record_route=True, port=callee_port, workdir=tmp_path / "uas") as uas,
        Baresip.start(
            "alice", ACCOUNTS["alice"], kamailio.address, workdir=tmp_path / "baresip"
        ) as baresip,
    ):
        kamailio.wait_registered("alice")
        assert baresip.registration() == "OK"
        baresip.dial(kamailio.uri("bob"))
        established = baresip.wait_event("CALL_ESTABLISHED")
        assert established["peeruri"] == kamailio.uri("bob")
        baresip.hangup()
        baresip.wait_event("CALL_CLOSED")
        wait_until(lambda: uas.counter("SuccessfulCall") == 1, 15, what="UAS saw the BYE")


def test_baresip_unknown_command_is_an_error(tmp_path: Path) -> None:
    with Baresip.start("carol", workdir=tmp_path) as baresip, pytest.raises(PeerError):
        baresip.command("no-such-command")


@pytest.mark.skipif(os.geteuid() != 0, reason="capturing on lo needs root")
def test_tshark_captures_sip_between_sipp_peers(tmp_path: Path) -> None:
    with Sipp.uas(workdir=tmp_path / "uas") as uas:
        with Tshark.start(f"udp port {uas.port}", workdir=tmp_path / "tshark") as tshark:
            uac = Sipp.uac(uas.address, calls=1, workdir=tmp_path / "uac")
            with uac:
                assert uac.wait(30) == 0, uac.log()
            tshark.stop()
        first_lines = [payload.split(b"\r\n", 1)[0] for payload in tshark.udp_payloads()]
    assert first_lines[0].startswith(b"INVITE sip:service@127.0.0.1:")
    assert b"SIP/2.0 200 OK" in first_lines
    assert first_lines[-1] == b"SIP/2.0 200 OK"


@pytest.mark.skipif(os.geteuid() != 0, reason="capturing on lo needs root")
def test_tshark_measures_rtp_between_two_baresips(kamailio: Kamailio, tmp_path: Path) -> None:
    first = free_port("udp", span=41)
    first += first % 2  # baresip's RTP ports are even
    alice_rtp, bob_rtp = (first, first + 19), (first + 20, first + 39)
    with (
        Baresip.start(
            "alice",
            ACCOUNTS["alice"],
            kamailio.address,
            rtp_ports=alice_rtp,
            workdir=tmp_path / "a",
        ) as alice,
        Baresip.start(
            "bob", ACCOUNTS["bob"], kamailio.address, rtp_ports=bob_rtp, workdir=tmp_path / "b"
        ) as bob,
    ):
        kamailio.wait_registered("alice")
        kamailio.wait_registered("bob")
        capture_filter = f"udp portrange {first}-{first + 39}"
        with Tshark.start(capture_filter, workdir=tmp_path / "tshark") as tshark:
            alice.dial(kamailio.uri("bob"))
            # Each side reports RTP once it receives some from the other.
            alice.wait_event("CALL_RTPESTAB")
            bob.wait_event("CALL_RTPESTAB")
            alice.hangup()
            tshark.stop()
    streams = tshark.rtp_streams()
    by_sender = {stream.src_port in range(alice_rtp[0], alice_rtp[1] + 1) for stream in streams}
    assert len(streams) == 2 and by_sender == {True, False}, streams
    for stream in streams:
        assert stream.payload == "g711U"
        assert stream.packets >= 1
        assert stream.lost == 0
