#!/usr/bin/env python3
"""Regenerate the real SIP messages under tests/data/ from the real peers on loopback.

    python scripts/capture_peers.py            # writes tests/data/*.sip
    python scripts/capture_peers.py --out DIR  # somewhere else, e.g. to compare

Every file holds one message, byte for byte as the peer sent it (one UDP datagram,
CRLF kept). The other side of each exchange is a small Python UDP socket in this script
that records what it receives and answers by hand, except for SIPp, where this script is a
transparent UDP relay between a SIPp UAC and a SIPp UAS:

- sipp-*:     `sipp -sn uac` -> relay -> `sipp -sn uas`, one call.
- kamailio-*: tests/peers.py's Kamailio (registrar + proxy with digest auth); this script
              plays alice (caller) and bob (registered callee) by hand.
- baresip-*:  baresip registers at this script (401, then 200), sends OPTIONS and an
              INVITE when told to over ctrl_tcp, and answers an INVITE from this script.

Values that vary per run (tags, branches, Call-IDs, nonces, ports, pids) differ from one
capture to the next; tests should parse the files, not compare them with literals of
those fields.
"""

from __future__ import annotations

import argparse
import re
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.peers import (  # noqa: E402
    LOOPBACK,
    Baresip,
    Kamailio,
    Sipp,
    digest_response,
    wait_until,
)

Address = tuple[str, int]
Match = Callable[[bytes], bool]

ALICE = ("alice", "alice-secret")
BOB = ("bob", "bob-secret")
TIMEOUT_S = 10.0

SDP_OFFER = (
    "v=0\r\n"
    "o=capture 1 1 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)

COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
}


# --------------------------------------------------------------------------- bytes helpers


def start_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def headers(data: bytes, name: str) -> list[str]:
    """Values of header `name` (case-insensitive, compact forms too), in order."""
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    values = []
    for line in head.split("\r\n")[1:]:
        field, colon, value = line.partition(":")
        field = field.strip().lower()
        if colon and COMPACT.get(field, field) == name.lower():
            values.append(value.strip())
    return values


def header(data: bytes, name: str) -> str:
    values = headers(data, name)
    if not values:
        raise ValueError(f"no {name} in {start_line(data)!r}")
    return values[0]


def is_request(method: str) -> Match:
    return lambda data: start_line(data).startswith(f"{method} ")


def is_response(status: int, method: str) -> Match:
    def match(data: bytes) -> bool:
        line = start_line(data)
        return line.startswith(f"SIP/2.0 {status} ") and header(data, "cseq").endswith(method)

    return match


def challenge_params(value: str) -> dict[str, str]:
    """`Digest realm="x", nonce="y", qop="auth"` -> {"realm": "x", ...}."""
    return {k.lower(): v for k, v in re.findall(r'(\w+)="?([^",]*)"?', value.split(" ", 1)[1])}


def credentials(
    challenge: str, *, user: str, password: str, method: str, uri: str, cnonce: str = "0a4f113b"
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge`."""
    params = challenge_params(challenge)
    qop = "auth" if "auth" in params.get("qop", "").split(",") else ""
    response = digest_response(
        user=user,
        realm=params["realm"],
        password=password,
        method=method,
        uri=uri,
        nonce=params["nonce"],
        cnonce=cnonce,
        qop=qop,
    )
    value = (
        f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{uri}", response="{response}", algorithm=MD5'
    )
    if qop:
        value += f', qop=auth, nc=00000001, cnonce="{cnonce}"'
    return value


def message(start: str, fields: list[str], body: str = "") -> bytes:
    lines = [start, *fields, f"Content-Length: {len(body.encode())}"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def response_to(
    request: bytes,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    fields: tuple[str, ...] = (),
    body: str = "",
) -> bytes:
    """A response copying Via, Record-Route, From, To (+tag), Call-ID and CSeq."""
    to = header(request, "to")
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    copied = [f"Via: {via}" for via in headers(request, "via")]
    copied += [f"Record-Route: {rr}" for rr in headers(request, "record-route")]
    copied += [
        f"From: {header(request, 'from')}",
        f"To: {to}",
        f"Call-ID: {header(request, 'call-id')}",
        f"CSeq: {header(request, 'cseq')}",
    ]
    return message(f"SIP/2.0 {status} {reason}", [*copied, *fields], body)


# --------------------------------------------------------------------------- a hand-played UA


@dataclass(frozen=True, slots=True)
class Datagram:
    data: bytes
    source: Address


class HandUA:
    """A UDP socket on loopback that keeps every datagram and hands them out by match."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port: int = self.sock.getsockname()[1]
        self.address = f"{LOOPBACK}:{self.port}"
        self.pending: list[Datagram] = []

    def send(self, data: bytes, target: Address) -> None:
        self.sock.sendto(data, target)

    def expect(self, what: str, match: Match, timeout: float = TIMEOUT_S) -> Datagram:
        """The first datagram (kept or new) that matches; others stay pending."""
        deadline = time.monotonic() + timeout
        while True:
            for index, datagram in enumerate(self.pending):
                if match(datagram.data):
                    del self.pending[index]
                    return datagram
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [start_line(d.data) for d in self.pending]
                raise TimeoutError(f"{self.name}: no {what} after {timeout} s; pending: {seen}")
            self.sock.settimeout(remaining)
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.pending.append(Datagram(data, (source[0], source[1])))

    def via(self) -> str:
        return f"Via: SIP/2.0/UDP {self.address};branch=z9hG4bK{secrets.token_hex(8)};rport"

    def close(self) -> None:
        self.sock.close()


class Capture:
    """Writes `<name>.sip` files and remembers what it wrote."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[str] = []

    def save(self, name: str, data: bytes) -> bytes:
        path = self.out / f"{name}.sip"
        path.write_bytes(data)
        self.written.append(path.name)
        print(f"{path.name:34} {start_line(data)}")
        return data


# --------------------------------------------------------------------------- SIPp


def capture_sipp(capture: Capture, workdir: Path) -> None:
    """`sipp -sn uac` -> this relay -> `sipp -sn uas`: SIPp sends responses to the source
    address of the request, so a relay sees both directions unchanged."""
    relay = HandUA("relay")
    wanted: list[tuple[str, Match]] = [
        ("sipp-uac-invite", is_request("INVITE")),
        ("sipp-uas-180", is_response(180, "INVITE")),
        ("sipp-uas-200-invite", is_response(200, "INVITE")),
        ("sipp-uac-ack", is_request("ACK")),
        ("sipp-uac-bye", is_request("BYE")),
        ("sipp-uas-200-bye", is_response(200, "BYE")),
    ]
    with Sipp.uas(workdir=workdir / "sipp-uas") as uas:
        uas_address = (LOOPBACK, uas.port)
        with Sipp.uac(relay.address, calls=1, workdir=workdir / "sipp-uac") as uac:
            caller: Address | None = None
            while wanted:
                datagram = relay.expect("SIPp message", lambda _data: True)
                if datagram.source == uas_address:
                    assert caller is not None, "the UAS spoke first"
                    relay.send(datagram.data, caller)
                else:
                    caller = datagram.source
                    relay.send(datagram.data, uas_address)
                for index, (name, match) in enumerate(wanted):
                    if match(datagram.data):
                        capture.save(name, datagram.data)
                        del wanted[index]
                        break
            if uac.wait(TIMEOUT_S) != 0:
                raise RuntimeError(uac.log())
    relay.close()


# --------------------------------------------------------------------------- Kamailio


class KamailioSession:
    """alice and bob played by hand against a running Kamailio."""

    def __init__(self, kamailio: Kamailio, capture: Capture) -> None:
        self.kamailio = kamailio
        self.capture = capture
        self.target: Address = (LOOPBACK, kamailio.port)
        self.alice = HandUA("alice")
        self.bob = HandUA("bob")

    def close(self) -> None:
        self.alice.close()
        self.bob.close()

    def options(self) -> None:
        ua = self.alice
        uri = self.kamailio.uri()
        ua.send(
            message(
                f"OPTIONS {uri} SIP/2.0",
                [
                    ua.via(),
                    "Max-Forwards: 70",
                    f"From: <sip:alice@{ua.address}>;tag={secrets.token_hex(4)}",
                    f"To: <{uri}>",
                    f"Call-ID: {secrets.token_hex(8)}@{LOOPBACK}",
                    "CSeq: 1 OPTIONS",
                ],
            ),
            self.target,
        )
        reply = ua.expect("200 to OPTIONS", is_response(200, "OPTIONS"))
        self.capture.save("kamailio-200-options", reply.data)

    def register_bob(self) -> None:
        ua, aor = self.bob, self.kamailio.uri(BOB[0])
        call_id, tag = f"{secrets.token_hex(8)}@{LOOPBACK}", secrets.token_hex(4)
        uri = self.kamailio.uri()

        def register(cseq: int, extra: list[str]) -> bytes:
            return message(
                f"REGISTER {uri} SIP/2.0",
                [
                    ua.via(),
                    "Max-Forwards: 70",
                    f"From: <{aor}>;tag={tag}",
                    f"To: <{aor}>",
                    f"Call-ID: {call_id}",
                    f"CSeq: {cseq} REGISTER",
                    f"Contact: <sip:bob@{ua.address}>",
                    *extra,
                    "Expires: 3600",
                ],
            )

        ua.send(register(1, []), self.target)
        challenge = ua.expect("401 to REGISTER", is_response(401, "REGISTER")).data
        self.capture.save("kamailio-401-register", challenge)
        authorization = credentials(
            header(challenge, "www-authenticate"),
            user=BOB[0],
            password=BOB[1],
            method="REGISTER",
            uri=uri,
        )
        ua.send(register(2, [f"Authorization: {authorization}"]), self.target)
        ok = ua.expect("200 to REGISTER", is_response(200, "REGISTER")).data
        self.capture.save("kamailio-200-register", ok)

    def invite(self, callee: str, *, save_challenge: bool) -> tuple[bytes, str, str]:
        """alice INVITEs `callee`: 407, ACK, INVITE with credentials.

        Returns the INVITE sent with credentials, its Call-ID and alice's From tag."""
        ua = self.alice
        uri = self.kamailio.uri(callee)
        call_id, tag = f"{secrets.token_hex(8)}@{LOOPBACK}", secrets.token_hex(4)
        sdp = SDP_OFFER.format(port=ua.port + 1)

        def invite(cseq: int, via: str, extra: list[str]) -> bytes:
            return message(
                f"INVITE {uri} SIP/2.0",
                [
                    via,
                    "Max-Forwards: 70",
                    f"From: <{self.kamailio.uri(ALICE[0])}>;tag={tag}",
                    f"To: <{uri}>",
                    f"Call-ID: {call_id}",
                    f"CSeq: {cseq} INVITE",
                    f"Contact: <sip:alice@{ua.address}>",
                    *extra,
                    "Content-Type: application/sdp",
                ],
                sdp,
            )

        first_via = ua.via()
        ua.send(invite(1, first_via, []), self.target)
        challenge = ua.expect("407 to INVITE", is_response(407, "INVITE")).data
        if save_challenge:
            self.capture.save("kamailio-407-invite", challenge)
        ack = message(
            f"ACK {uri} SIP/2.0",
            [
                first_via,
                "Max-Forwards: 70",
                f"From: {header(challenge, 'from')}",
                f"To: {header(challenge, 'to')}",
                f"Call-ID: {call_id}",
                "CSeq: 1 ACK",
            ],
        )
        ua.send(ack, self.target)
        authorization = credentials(
            header(challenge, "proxy-authenticate"),
            user=ALICE[0],
            password=ALICE[1],
            method="INVITE",
            uri=uri,
        )
        request = invite(2, ua.via(), [f"Proxy-Authorization: {authorization}"])
        ua.send(request, self.target)
        return request, call_id, tag

    def call_bob(self) -> None:
        """An authenticated call alice -> Kamailio -> bob, answered and hung up."""
        self.invite(BOB[0], save_challenge=True)
        trying = self.alice.expect("100 to INVITE", is_response(100, "INVITE")).data
        self.capture.save("kamailio-100-invite", trying)
        proxied = self.bob.expect("proxied INVITE", is_request("INVITE"))
        self.capture.save("kamailio-proxied-invite", proxied.data)
        bob_tag = secrets.token_hex(4)
        contact = f"Contact: <sip:bob@{self.bob.address}>"
        self.bob.send(
            response_to(proxied.data, 180, "Ringing", to_tag=bob_tag, fields=(contact,)),
            proxied.source,
        )
        ringing = self.alice.expect("180 to INVITE", is_response(180, "INVITE")).data
        self.capture.save("kamailio-proxied-180", ringing)
        answer = SDP_OFFER.format(port=self.bob.port + 1).replace("o=capture", "o=bob")
        self.bob.send(
            response_to(
                proxied.data,
                200,
                "OK",
                to_tag=bob_tag,
                fields=(contact, "Content-Type: application/sdp"),
                body=answer,
            ),
            proxied.source,
        )
        ok = self.alice.expect("200 to INVITE", is_response(200, "INVITE")).data
        self.capture.save("kamailio-proxied-200-invite", ok)
        self.in_dialog(ok, "ACK", 2)
        ack = self.bob.expect("proxied ACK", is_request("ACK"))
        self.capture.save("kamailio-proxied-ack", ack.data)
        self.in_dialog(ok, "BYE", 3)
        bye = self.bob.expect("proxied BYE", is_request("BYE"))
        self.capture.save("kamailio-proxied-bye", bye.data)
        self.bob.send(response_to(bye.data, 200, "OK"), bye.source)
        bye_ok = self.alice.expect("200 to BYE", is_response(200, "BYE")).data
        self.capture.save("kamailio-proxied-200-bye", bye_ok)

    def in_dialog(self, ok: bytes, method: str, cseq: int) -> None:
        """alice's ACK or BYE along the route set of the 200 (Record-Route reversed)."""
        remote_target = re.sub(r"^.*<(.*)>.*$", r"\1", header(ok, "contact"))
        routes = [f"Route: {rr}" for rr in reversed(headers(ok, "record-route"))]
        self.alice.send(
            message(
                f"{method} {remote_target} SIP/2.0",
                [
                    self.alice.via(),
                    *routes,
                    "Max-Forwards: 70",
                    f"From: {header(ok, 'from')}",
                    f"To: {header(ok, 'to')}",
                    f"Call-ID: {header(ok, 'call-id')}",
                    f"CSeq: {cseq} {method}",
                ],
            ),
            self.target,
        )

    def call_nobody(self) -> None:
        """An authenticated INVITE to an unregistered user: 404."""
        self.invite("carol", save_challenge=False)
        not_found = self.alice.expect("404 to INVITE", is_response(404, "INVITE")).data
        self.capture.save("kamailio-404", not_found)
        ack = message(
            f"ACK {self.kamailio.uri('carol')} SIP/2.0",
            [
                f"Via: {header(not_found, 'via')}",
                "Max-Forwards: 70",
                f"From: {header(not_found, 'from')}",
                f"To: {header(not_found, 'to')}",
                f"Call-ID: {header(not_found, 'call-id')}",
                "CSeq: 2 ACK",
            ],
        )
        self.alice.send(ack, self.target)


def capture_kamailio(capture: Capture, workdir: Path) -> None:
    accounts = dict([ALICE, BOB])
    with Kamailio.start(accounts, workdir=workdir / "kamailio") as kamailio:
        session = KamailioSession(kamailio, capture)
        try:
            session.options()
            session.register_bob()
            session.call_bob()
            session.call_nobody()
        finally:
            session.close()


# --------------------------------------------------------------------------- baresip


def capture_baresip(capture: Capture, workdir: Path) -> None:
    """baresip registers at this script, sends OPTIONS and an INVITE, answers an INVITE."""
    registrar = HandUA("registrar")
    with Baresip.start(
        ALICE[0], ALICE[1], registrar.address, workdir=workdir / "baresip"
    ) as baresip:
        register = registrar.expect("REGISTER", is_request("REGISTER"))
        capture.save("baresip-register", register.data)
        nonce = secrets.token_hex(16)
        challenge = f'WWW-Authenticate: Digest realm="{LOOPBACK}", nonce="{nonce}", qop="auth"'
        registrar.send(
            response_to(register.data, 401, "Unauthorized", to_tag="r1", fields=(challenge,)),
            register.source,
        )
        register = registrar.expect("REGISTER with Authorization", is_request("REGISTER"))
        capture.save("baresip-register-auth", register.data)
        contact = f"Contact: {header(register.data, 'contact')}"
        registrar.send(
            response_to(register.data, 200, "OK", to_tag="r2", fields=(contact,)),
            register.source,
        )
        wait_until(lambda: baresip.registration() == "OK", TIMEOUT_S, what="registered")

        callee = f"sip:bob@{registrar.address}"
        baresip.command("options", callee)
        options = registrar.expect("OPTIONS", is_request("OPTIONS"))
        capture.save("baresip-options", options.data)
        registrar.send(response_to(options.data, 200, "OK", to_tag="o1"), options.source)

        baresip.dial(callee)
        invite = registrar.expect("INVITE", is_request("INVITE"))
        capture.save("baresip-invite", invite.data)
        registrar.send(response_to(invite.data, 486, "Busy Here", to_tag="b1"), invite.source)
        ack = registrar.expect("ACK", is_request("ACK"))
        capture.save("baresip-ack-486", ack.data)

        answer_invite(registrar, baresip, capture)
    registrar.close()


def answer_invite(caller: HandUA, baresip: Baresip, capture: Capture) -> None:
    """This script calls baresip (auto-answer): OPTIONS, INVITE, ACK, BYE."""
    target = (LOOPBACK, baresip.port)
    uri = f"sip:alice@{baresip.address}"
    call_id, tag = f"{secrets.token_hex(8)}@{LOOPBACK}", secrets.token_hex(4)

    def request(method: str, cseq: int, extra: list[str], body: str = "", to: str = "") -> bytes:
        return message(
            f"{method} {uri} SIP/2.0",
            [
                caller.via(),
                "Max-Forwards: 70",
                f"From: <sip:bob@{caller.address}>;tag={tag}",
                f"To: {to or f'<{uri}>'}",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} {method}",
                f"Contact: <sip:bob@{caller.address}>",
                *extra,
            ],
            body,
        )

    caller.send(request("OPTIONS", 1, ["Accept: application/sdp"]), target)
    options_ok = caller.expect("200 to OPTIONS", is_response(200, "OPTIONS")).data
    capture.save("baresip-200-options", options_ok)

    offer = SDP_OFFER.format(port=caller.port + 1)
    caller.send(request("INVITE", 2, ["Content-Type: application/sdp"], offer), target)
    for status, name in ((100, "baresip-100-invite"), (180, "baresip-180")):
        try:
            capture.save(name, caller.expect(name, is_response(status, "INVITE"), 3.0).data)
        except TimeoutError:
            print(f"{name}: baresip sent none")
    ok = caller.expect("200 to INVITE", is_response(200, "INVITE")).data
    capture.save("baresip-200-invite", ok)
    to = header(ok, "to")
    caller.send(request("ACK", 2, [], to=to), target)
    baresip.wait_event("CALL_ESTABLISHED")
    caller.send(request("BYE", 3, [], to=to), target)
    bye_ok = caller.expect("200 to BYE", is_response(200, "BYE")).data
    capture.save("baresip-200-bye", bye_ok)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    capture = Capture(args.out)
    with tempfile.TemporaryDirectory(prefix="callmeter-capture-") as tmp:
        workdir = Path(tmp)
        capture_sipp(capture, workdir)
        capture_kamailio(capture, workdir)
        capture_baresip(capture, workdir)
    print(f"{len(capture.written)} messages written to {args.out}")


if __name__ == "__main__":
    main()
