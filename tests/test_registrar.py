"""The built-in registrar and proxy (callmeter.registrar) with real user agents.

Behaviour tests run a :class:`Registrar` and :class:`UserAgent` cores on the in-memory network
of ``tests.netsim`` with its fake clock; the last tests use real loopback sockets through
``RunningRegistrar``. Every wait polls with a deadline; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import csv
import random
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callmeter.registrar import (
    Account,
    AccountTable,
    LocationService,
    Registrar,
    RegistrarConfig,
    RunningRegistrar,
    provision,
    read_credentials,
    serve,
    write_credentials,
)
from callmeter.registrar.guard import DigestGuard, Verdict, parse_credentials
from callmeter.registrar.location import Binding
from callmeter.registrar.routing import LocalIdentity
from callmeter.sip.auth import Challenge, Credentials, DigestSession
from callmeter.sip.core import Address
from callmeter.sip.errors import ParseError
from callmeter.sip.events import (
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallFailed,
    CallRinging,
    Event,
    IncomingCall,
    MalformedMessageReceived,
    Registered,
    RegistrationFailed,
    Unregistered,
)
from callmeter.sip.message import Request, Response, parse_message
from callmeter.sip.uri import parse_uri
from callmeter.sip.useragent import UserAgent, UserAgentConfig
from callmeter.transport import open_tcp, open_udp, run
from tests.netsim import Drop, Network
from tests.peers import free_port, sip_options

REGISTRAR: Address = ("127.0.0.1", 5060)
DOMAIN = "127.0.0.1"
E = TypeVar("E", bound=Event)


# -- the lab: a registrar, user agents and a fake clock ----------------------------------------


@dataclass
class Lab:
    net: Network
    registrar: Registrar
    accounts: list[Account]
    events: dict[Address, list[Event]] = field(default_factory=dict)
    registrar_events: list[Event] = field(default_factory=list)
    agents: dict[Address, UserAgent] = field(default_factory=dict)

    def agent(
        self, account: Account, port: int, *, password: str | None = None, **options: object
    ) -> UserAgent:
        config = UserAgentConfig(
            username=account.username,
            domain=account.domain,
            proxy=REGISTRAR,
            password=account.password if password is None else password,
        )
        config = replace(config, **options)  # type: ignore[arg-type]
        ua = UserAgent(config, ("127.0.0.1", port), rng=random.Random(port))
        self.net.attach(ua, ua.local_addr)
        self.agents[ua.local_addr] = ua
        self.events[ua.local_addr] = []
        return ua

    def drain(self) -> None:
        for addr, ua in self.agents.items():
            while (event := ua.next_event()) is not None:
                self.events[addr].append(event)
        while (event := self.registrar.next_event()) is not None:
            self.registrar_events.append(event)

    def of(self, ua: UserAgent, kind: type[E]) -> list[E]:
        self.drain()
        return [e for e in self.events[ua.local_addr] if isinstance(e, kind)]

    def wait(self, predicate: Callable[[], object], what: str, within_s: float = 10.0) -> None:
        """Step the fake clock until ``predicate`` holds, failing after ``within_s``."""
        deadline = self.net.now + within_s
        while True:
            self.drain()
            if predicate():
                return
            if self.net.now >= deadline:
                raise AssertionError(f"no {what} within {within_s} s of fake time")
            self.net.run_until(min(deadline, self.net.now + 0.05))

    def run(self, seconds: float) -> None:
        self.net.run_until(self.net.now + seconds)
        self.drain()

    def register(self, *agents: UserAgent) -> None:
        for ua in agents:
            ua.register(self.net.now)
        self.wait(lambda: all(self.of(ua, Registered) for ua in agents), "registration")

    def from_registrar(self, dst: Address, start: str) -> list[Request | Response]:
        """Messages the registrar sent to ``dst`` whose first line starts with ``start``."""
        return [
            parse_message(data)
            for _, src, to, data in self.net.log
            if src == REGISTRAR and to == dst and data.startswith(start.encode())
        ]


def make_lab(
    config: RegistrarConfig | None = None, *, accounts: int = 4, drop: Drop | None = None
) -> Lab:
    registrar = Registrar(
        config or RegistrarConfig(domain=DOMAIN), local_addr=REGISTRAR, rng=random.Random(7)
    )
    created = registrar.accounts.provision(accounts, random.Random(1), DOMAIN)
    net = Network(drop=drop)
    net.attach(registrar, REGISTRAR)
    return Lab(net, registrar, created)


@pytest.fixture
def lab() -> Lab:
    return make_lab()


class RawPeer:
    """A core that sends the bytes a test gives it and records what comes back."""

    def __init__(self, net: Network, addr: Address) -> None:
        self.net, self.addr = net, addr
        self.received: list[bytes] = []
        self._out: list[tuple[bytes, Address]] = []
        net.attach(self, addr)

    def send(self, data: bytes, to: Address = REGISTRAR) -> None:
        self._out.append((data, to))
        self.net.flush()

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.received.append(data)

    def handle_timer(self, now: float) -> None:
        pass

    def get_timer(self) -> float | None:
        return None

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def responses(self) -> list[Response]:
        return [m for m in map(parse_message, self.received) if isinstance(m, Response)]


def raw_request(
    method: str, uri: str, *, port: int = 5999, extra: str = "", to: str = "<sip:x@127.0.0.1>",
    name: str = "",
) -> bytes:  # fmt: skip
    """A request from a peer outside our domain; ``name`` keeps Call-ID and branch apart."""
    name = name or method.lower()
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{name}{port}",
        "Max-Forwards: 70",
        f"From: <sip:raw@127.0.0.1:{port}>;tag=raw1",
        f"To: {to}",
        f"Call-ID: raw-{name}@127.0.0.1",
        f"CSeq: 1 {method}",
    ]
    head = "\r\n".join(lines) + ("\r\n" + extra if extra else "")
    return (head + "\r\nContent-Length: 0\r\n\r\n").encode()


# -- accounts ----------------------------------------------------------------------------------


def test_provision_makes_distinct_random_accounts_from_the_rng() -> None:
    accounts = provision(50, random.Random(3), "example.test")
    assert len({a.username for a in accounts}) == 50
    assert len({a.password for a in accounts}) == 50
    for account in accounts:
        assert account.username.startswith("cm-") and len(account.username) == 13
        assert len(account.password) == 24 and account.domain == "example.test"
    assert accounts[0].aor == f"sip:{accounts[0].username}@example.test"
    assert provision(50, random.Random(3), "example.test") == accounts
    assert provision(50, random.Random(4), "example.test") != accounts
    with pytest.raises(ValueError, match="cannot provision -1 accounts"):
        provision(-1, random.Random(3), "x")


def test_account_table_provisions_around_taken_names_and_caches_ha1() -> None:
    rng = random.Random(5)
    first = provision(1, random.Random(5), "d")[0]
    table = AccountTable([first])
    added = table.provision(3, rng, "d")  # the same rng would draw ``first`` again
    assert first.username not in {a.username for a in added}
    assert len(table) == 4 and all(a.username in table for a in added)
    ha1 = table.ha1(first.username, "d")
    assert ha1 is not None and table.ha1(first.username, "d") is ha1
    table.add(replace(first, password="changed"))
    assert table.ha1(first.username, "d") != ha1
    assert table.remove(first.username) is not None and table.ha1(first.username, "d") is None


def test_credentials_file_round_trips_and_is_private(tmp_path: Path) -> None:
    accounts = provision(3, random.Random(9), "127.0.0.1")
    path = write_credentials(tmp_path / "accounts.csv", accounts)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["username", "password", "domain"]
    assert rows[1] == [accounts[0].username, accounts[0].password, "127.0.0.1"]
    assert read_credentials(path) == accounts
    (tmp_path / "bad.csv").write_text("user,pass\na,b\n")
    with pytest.raises(ValueError, match="expected the columns username,password,domain"):
        read_credentials(tmp_path / "bad.csv")


# -- the location service ------------------------------------------------------------------------


def register_request(
    contacts: list[str], *, expires: int | None = None, call_id: str = "c1", cseq: int = 1
) -> Request:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKr",
        "From: <sip:alice@127.0.0.1>;tag=f",
        "To: <sip:alice@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *[f"Contact: {c}" for c in contacts],
        *([] if expires is None else [f"Expires: {expires}"]),
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


AOR = "sip:alice@127.0.0.1"
SRC: Address = ("127.0.0.1", 40000)


def contacts_of(bindings: list[Binding] | tuple[Binding, ...]) -> list[str]:
    return [str(b.uri) for b in bindings]


def test_location_grants_expiry_from_param_header_or_default_within_bounds() -> None:
    location = LocationService(min_expires_s=60, max_expires_s=3600, default_expires_s=1800)
    request = register_request(
        ["<sip:a@10.0.0.1:5071>;expires=120", "<sip:a@10.0.0.2>", "<sip:a@10.0.0.3>;expires=9999"],
        expires=300,
    )
    outcome = location.register(AOR, request, SRC, now=10.0)
    assert outcome.status == 200
    assert [(str(b.uri), b.remaining_s(10.0)) for b in outcome.bindings] == [
        ("sip:a@10.0.0.1:5071", 120),
        ("sip:a@10.0.0.2", 300),
        ("sip:a@10.0.0.3", 3600),
    ]
    assert outcome.bindings[0].source == SRC and outcome.bindings[0].call_id == "c1"
    other = location.register("sip:bob@127.0.0.1", register_request(["<sip:b@10.0.0.9>"]), SRC, 10)
    assert [b.remaining_s(10.0) for b in other.bindings] == [1800]


def test_location_refuses_too_brief_expiry_with_423_and_changes_nothing() -> None:
    location = LocationService(min_expires_s=60)
    request = register_request(["<sip:a@10.0.0.1>", "<sip:a@10.0.0.2>;expires=30"])
    outcome = location.register(AOR, request, SRC, 0.0)
    assert (outcome.status, outcome.min_expires) == (423, 60)
    assert location.lookup(AOR, 0.0) == []


def test_location_expires_lazily_on_lookup_and_in_the_sweep() -> None:
    location = LocationService(min_expires_s=10)
    location.register(AOR, register_request(["<sip:a@10.0.0.1>"], expires=60), SRC, 0.0)
    location.register("sip:bob@x", register_request(["<sip:b@10.0.0.2>"], expires=100), SRC, 0.0)
    assert location.next_expiry() == 60.0
    assert contacts_of(location.lookup(AOR, 59.9)) == ["sip:a@10.0.0.1"]
    assert location.lookup(AOR, 60.0) == [] and len(location) == 1  # dropped on lookup
    assert location.sweep(99.0) == 0 and location.aor_count == 1
    assert location.sweep(100.0) == 1 and location.aor_count == 0 and len(location) == 0


def test_location_refresh_moves_the_expiry_and_the_old_heap_entry_is_ignored() -> None:
    location = LocationService(min_expires_s=10)
    location.register(AOR, register_request(["<sip:a@10.0.0.1>"], expires=60), SRC, 0.0)
    refresh = register_request(["<sip:a@10.0.0.1>"], expires=60, cseq=2)
    assert location.register(AOR, refresh, ("127.0.0.1", 40001), 50.0).status == 200
    assert location.sweep(60.0) == 0
    (binding,) = location.lookup(AOR, 60.0)
    assert (binding.expires_at, binding.cseq, binding.source) == (110.0, 2, ("127.0.0.1", 40001))


def test_location_orders_updates_by_call_id_and_cseq() -> None:
    """RFC 3261 section 10.3 step 7: same Call-ID needs a higher CSeq."""
    location = LocationService()
    location.register(AOR, register_request(["<sip:a@10.0.0.1>"], cseq=5), SRC, 0.0)
    stale = location.register(AOR, register_request(["<sip:a@10.0.0.1>"], cseq=5), SRC, 1.0)
    assert (stale.status, stale.reason) == (500, "Out Of Order CSeq")
    other_call = register_request(["<sip:a@10.0.0.1>"], call_id="c2", cseq=1)
    assert location.register(AOR, other_call, SRC, 2.0).status == 200
    assert location.lookup(AOR, 2.0)[0].call_id == "c2"


def test_location_contact_star_removes_all_only_with_expires_zero() -> None:
    location = LocationService()
    location.register(AOR, register_request(["<sip:a@10.0.0.1>", "<sip:a@10.0.0.2>"]), SRC, 0.0)
    bad = location.register(AOR, register_request(["*"], expires=60, cseq=2), SRC, 1.0)
    assert (bad.status, bad.reason) == (400, "Contact: * Requires Expires: 0")
    old = location.register(AOR, register_request(["*"], expires=0, cseq=1), SRC, 1.0)
    assert old.status == 500 and len(location.lookup(AOR, 1.0)) == 2
    done = location.register(AOR, register_request(["*"], expires=0, cseq=2), SRC, 1.0)
    assert (done.status, done.bindings) == (200, ()) and location.lookup(AOR, 1.0) == []


def test_location_expires_zero_removes_one_contact_and_a_query_lists_the_rest() -> None:
    location = LocationService()
    location.register(AOR, register_request(["<sip:a@10.0.0.1>", "<sip:a@10.0.0.2>"]), SRC, 0.0)
    request = register_request(["<sip:a@10.0.0.1>;expires=0"], cseq=2)
    assert contacts_of(location.register(AOR, request, SRC, 1.0).bindings) == ["sip:a@10.0.0.2"]
    query = location.register(AOR, register_request([], cseq=3), SRC, 1.0)
    assert contacts_of(query.bindings) == ["sip:a@10.0.0.2"]


def test_location_caps_contacts_per_aor_and_compares_uris_per_rfc() -> None:
    location = LocationService(max_contacts=2)
    location.register(AOR, register_request(["<sip:a@HOST.example:5071>"]), SRC, 0.0)
    same = register_request(["<sip:a@host.example:5071;ob>"], cseq=2)  # host case, extra param
    assert len(location.register(AOR, same, SRC, 0.0).bindings) == 1
    two = register_request(["<sip:a@10.0.0.1>", "<sip:a@10.0.0.2>"], cseq=3)
    assert location.register(AOR, two, SRC, 0.0).status == 403
    tel = location.register(AOR, register_request(["<tel:+15551234>"], cseq=4), SRC, 0.0)
    assert tel.status == 400
    assert location.remove(AOR, parse_uri("sip:a@host.example:5071")) == 1  # type: ignore[arg-type]
    assert location.remove(AOR) == 0


# -- registration through the registrar ---------------------------------------------------------


def test_register_is_challenged_then_accepted_with_the_granted_expiry(lab: Lab) -> None:
    alice = lab.agent(lab.accounts[0], 5071, expires=600)
    lab.register(alice)
    challenges = lab.from_registrar(alice.local_addr, "SIP/2.0 401")
    assert len(challenges) == 1
    assert 'realm="127.0.0.1"' in (challenges[0].headers.get("WWW-Authenticate") or "")
    (ok,) = lab.from_registrar(alice.local_addr, "SIP/2.0 200")
    assert ok.headers.get_all("Contact") == [
        f"<sip:{alice.config.username}@127.0.0.1:5071>;expires=600"
    ]
    assert lab.of(alice, Registered)[0].expires == 600
    (binding,) = lab.registrar.location.lookup(
        f"sip:{alice.config.username}@127.0.0.1", lab.net.now
    )
    assert binding.source == alice.local_addr
    assert lab.registrar.counters["registers"] == 1


def test_register_expiry_is_capped_and_too_brief_is_raised_to_min_expires() -> None:
    lab = make_lab(RegistrarConfig(domain=DOMAIN, min_expires_s=120, max_expires_s=900))
    long_lived = lab.agent(lab.accounts[0], 5071, expires=7200)
    brief = lab.agent(lab.accounts[1], 5072, expires=30)
    lab.register(long_lived, brief)
    assert lab.of(long_lived, Registered)[0].expires == 900
    assert lab.of(brief, Registered)[0].expires == 120
    (too_brief,) = lab.from_registrar(brief.local_addr, "SIP/2.0 423")
    assert too_brief.headers.get("Min-Expires") == "120"


def test_wrong_password_fails_registration(lab: Lab) -> None:
    mallory = lab.agent(lab.accounts[0], 5071, password="not-the-password")
    mallory.register(lab.net.now)
    lab.wait(lambda: lab.of(mallory, RegistrationFailed), "a failed registration")
    assert lab.of(mallory, RegistrationFailed)[0].status in (401, 403)
    assert lab.of(mallory, Registered) == []
    assert lab.registrar.location.aor_count == 0 and lab.registrar.counters["auth_rejected"] == 1


def test_registering_someone_elses_aor_is_forbidden(lab: Lab) -> None:
    victim, mallory = lab.accounts[0], lab.accounts[1]
    ua = lab.agent(
        victim, 5071, auth_username=mallory.username, password=mallory.password
    )  # right credentials, wrong AOR
    ua.register(lab.net.now)
    lab.wait(lambda: lab.of(ua, RegistrationFailed), "a failed registration")
    assert lab.of(ua, RegistrationFailed)[0].status == 403
    assert lab.registrar.location.aor_count == 0


def test_refresh_keeps_the_binding_and_silence_lets_it_expire(lab: Lab) -> None:
    alice = lab.agent(lab.accounts[0], 5071, expires=120)
    bob = lab.agent(lab.accounts[1], 5072, expires=120)
    lab.register(alice, bob)
    lab.wait(lambda: len(lab.of(alice, Registered)) >= 3, "two refreshes", within_s=200)
    del lab.net.cores[bob.local_addr]  # bob's phone is gone: no more refreshes
    lab.run(130)
    aor = f"sip:{alice.config.username}@127.0.0.1"
    assert len(lab.registrar.location.lookup(aor, lab.net.now)) == 1
    assert lab.registrar.location.aor_count == 1  # bob's binding swept without a lookup
    assert lab.registrar.counters["bindings_expired"] == 1


def test_unregister_removes_the_binding(lab: Lab) -> None:
    alice = lab.agent(lab.accounts[0], 5071)
    lab.register(alice)
    alice.unregister(lab.net.now)
    lab.wait(lambda: lab.of(alice, Unregistered), "the unregistration")
    assert lab.registrar.location.aor_count == 0
    assert lab.registrar.counters["unregisters"] == 1


def test_stale_nonce_is_rechallenged_with_stale_true() -> None:
    lab = make_lab(RegistrarConfig(domain=DOMAIN, nonce_max_age_s=30))
    alice = lab.agent(lab.accounts[0], 5071, expires=120)
    lab.register(alice)
    lab.wait(lambda: len(lab.of(alice, Registered)) == 2, "the refresh", within_s=120)
    stale = [
        r for r in lab.from_registrar(alice.local_addr, "SIP/2.0 401")
        if "stale=true" in (r.headers.get("WWW-Authenticate") or "")
    ]  # fmt: skip
    assert len(stale) == 1 and lab.of(alice, RegistrationFailed) == []


# -- calls through the proxy ---------------------------------------------------------------------


def two_phones(lab: Lab, *, ring_time_s: float = 1.0) -> tuple[UserAgent, UserAgent]:
    alice = lab.agent(lab.accounts[0], 5071)
    bob = lab.agent(lab.accounts[1], 5072, ring_time_s=ring_time_s)
    lab.register(alice, bob)
    return alice, bob


def test_call_is_proxied_with_record_route_and_ended_by_the_caller(lab: Lab) -> None:
    alice, bob = two_phones(lab)
    call_id = alice.invite(lab.accounts[1].aor, lab.net.now)
    lab.wait(lambda: lab.of(alice, CallAnswered) and lab.of(bob, CallAnswered), "the answer")
    assert [e.status for e in lab.of(alice, CallRinging)] == [180]
    assert lab.of(bob, IncomingCall)[0].caller == f"<sip:{alice.config.username}@127.0.0.1>"[1:-1]
    rr = lab.registrar.record_route
    assert rr == "<sip:127.0.0.1:5060;lr>"
    (invite,) = lab.from_registrar(bob.local_addr, "INVITE")
    assert invite.headers.get_all("Record-Route") == [rr]
    assert str(invite.uri) == f"sip:{bob.config.username}@127.0.0.1:5072"  # retargeted
    assert invite.headers.get("Max-Forwards") == "69" and len(invite.via) == 2
    assert "Proxy-Authorization" not in invite.headers  # consumed by the proxy
    assert [v.rport for v in invite.via] == [None, 5071]  # RFC 3581 stamp on alice's Via
    statuses = [
        m.status for m in lab.from_registrar(alice.local_addr, "SIP/2.0") if isinstance(m, Response)
    ]
    assert statuses[-4:] == [407, 100, 180, 200]
    ok = lab.from_registrar(alice.local_addr, "SIP/2.0 200")[-1]
    assert ok.headers.get_all("Record-Route") == [rr] and len(ok.via) == 1
    (ack,) = lab.from_registrar(bob.local_addr, "ACK")
    assert "Route" not in ack.headers and len(ack.via) == 2
    alice.hangup(call_id, lab.net.now)
    lab.wait(lambda: lab.of(alice, CallEnded) and lab.of(bob, CallEnded), "the end of the call")
    assert (lab.of(alice, CallEnded)[0].by, lab.of(bob, CallEnded)[0].by) == ("local", "remote")
    assert lab.of(alice, CallEnded)[0].status == 200
    assert len(lab.from_registrar(bob.local_addr, "BYE")) == 1
    assert lab.registrar.counters["forwarded_INVITE"] == 1


def test_callee_can_end_the_call(lab: Lab) -> None:
    alice, bob = two_phones(lab, ring_time_s=0)
    call_id = alice.invite(lab.accounts[1].aor, lab.net.now)
    lab.wait(lambda: lab.of(bob, CallAnswered), "the answer")
    bob.hangup(call_id, lab.net.now)
    lab.wait(lambda: lab.of(alice, CallEnded) and lab.of(bob, CallEnded), "the end of the call")
    assert lab.of(alice, CallEnded)[0].by == "remote" and lab.of(bob, CallEnded)[0].status == 200
    (bye,) = lab.from_registrar(alice.local_addr, "BYE")
    assert str(bye.uri) == f"sip:{alice.config.username}@127.0.0.1:5071"


def test_cancel_of_a_ringing_call_gives_487_and_both_sides_see_it_cancelled(lab: Lab) -> None:
    alice, bob = two_phones(lab, ring_time_s=30)
    call_id = alice.invite(lab.accounts[1].aor, lab.net.now)
    lab.wait(lambda: lab.of(alice, CallRinging), "ringing")
    alice.hangup(call_id, lab.net.now)
    lab.wait(lambda: lab.of(alice, CallCancelled) and lab.of(bob, CallCancelled), "cancellation")
    assert lab.of(alice, CallCancelled)[0].by == "local"
    assert lab.of(bob, CallCancelled)[0].by == "remote"
    assert len(lab.from_registrar(alice.local_addr, "SIP/2.0 487")) == 1
    (cancel,) = lab.from_registrar(bob.local_addr, "CANCEL")
    (invite,) = lab.from_registrar(bob.local_addr, "INVITE")
    assert cancel.via[0].branch == invite.via[0].branch
    lab.run(40)
    assert lab.of(alice, CallAnswered) == [] and lab.of(bob, CallAnswered) == []
    assert lab.registrar.counters["cancels_sent"] == 1


def test_unknown_user_is_404_and_unregistered_user_is_480(lab: Lab) -> None:
    alice = lab.agent(lab.accounts[0], 5071)
    lab.register(alice)
    alice.invite("sip:nobody@127.0.0.1", lab.net.now)
    alice.invite(lab.accounts[2].aor, lab.net.now)  # an account that never registered
    lab.wait(lambda: len(lab.of(alice, CallFailed)) == 2, "two failures")
    assert sorted(e.status for e in lab.of(alice, CallFailed)) == [404, 480]
    assert lab.registrar.counters["forwarded_INVITE"] == 0


def test_caller_authenticated_as_someone_else_is_forbidden(lab: Lab) -> None:
    bob = lab.agent(lab.accounts[1], 5072)
    lab.register(bob)
    alice, mallory = lab.accounts[0], lab.accounts[2]
    impostor = lab.agent(alice, 5071, auth_username=mallory.username, password=mallory.password)
    impostor.invite(lab.accounts[1].aor, lab.net.now)
    lab.wait(lambda: lab.of(impostor, CallFailed), "the refusal")
    assert lab.of(impostor, CallFailed)[0].status == 403
    assert lab.of(bob, IncomingCall) == []


def test_invite_with_a_wrong_password_is_refused_after_the_407(lab: Lab) -> None:
    bob = lab.agent(lab.accounts[1], 5072)
    lab.register(bob)
    caller = lab.agent(lab.accounts[0], 5071, password="wrong")
    caller.invite(lab.accounts[1].aor, lab.net.now)
    lab.wait(lambda: lab.of(caller, CallFailed), "the refusal")
    assert lab.of(caller, CallFailed)[0].status == 407
    assert lab.of(bob, IncomingCall) == []


def test_calls_need_no_credentials_when_authentication_is_off() -> None:
    config = RegistrarConfig(
        domain=DOMAIN, authenticate_register=False, authenticate_requests=False
    )
    lab = make_lab(config)
    alice = lab.agent(replace(lab.accounts[0], password="anything"), 5071)
    bob = lab.agent(lab.accounts[1], 5072, ring_time_s=0)
    lab.register(alice, bob)
    alice.invite(lab.accounts[1].aor, lab.net.now)
    lab.wait(lambda: lab.of(alice, CallAnswered), "the answer")
    assert lab.from_registrar(alice.local_addr, "SIP/2.0 40") == []  # no 401, no 407


def test_downstream_timeout_gives_408_upstream(lab: Lab) -> None:
    alice, bob = two_phones(lab)
    del lab.net.cores[bob.local_addr]  # registered, then unplugged
    alice.invite(lab.accounts[1].aor, lab.net.now)
    lab.wait(lambda: lab.of(alice, CallFailed), "the timeout", within_s=60)
    assert lab.of(alice, CallFailed)[0].status == 408
    assert lab.registrar.counters["replied_408"] == 1
    assert len(lab.from_registrar(bob.local_addr, "INVITE")) > 1  # Timer A retransmissions


def test_timer_c_cancels_a_call_that_rings_too_long() -> None:
    lab = make_lab(RegistrarConfig(domain=DOMAIN, timer_c_s=5))
    alice, bob = two_phones(lab, ring_time_s=600)
    alice.invite(lab.accounts[1].aor, lab.net.now)
    lab.wait(lambda: lab.of(alice, CallFailed), "the end of the ringing", within_s=10)
    assert lab.of(alice, CallFailed)[0].status == 487
    assert lab.of(bob, CallCancelled)[0].by == "remote"
    assert lab.registrar.counters["cancels_sent"] == 1


def test_cancel_before_any_downstream_response_ends_in_487_at_timer_b() -> None:
    lab = make_lab(drop=lambda data, src, dst: dst == ("127.0.0.1", 5072) and b"INVITE" in data)
    alice, bob = two_phones(lab)
    call_id = alice.invite(lab.accounts[1].aor, lab.net.now)
    lab.wait(lambda: lab.from_registrar(alice.local_addr, "SIP/2.0 100"), "the 100")
    alice.hangup(call_id, lab.net.now)  # our 100 lets alice send CANCEL at once
    lab.wait(lambda: lab.of(alice, CallCancelled), "the 487", within_s=40)
    assert lab.from_registrar(bob.local_addr, "CANCEL") == []  # nothing to cancel downstream
    assert lab.registrar.counters["replied_487"] == 1


def test_downstream_503_is_relayed_as_500(lab: Lab) -> None:
    alice = lab.agent(lab.accounts[0], 5071)
    bob = lab.agent(lab.accounts[1], 5072, answer_status=503)
    lab.register(alice, bob)
    alice.invite(lab.accounts[1].aor, lab.net.now)
    lab.wait(lambda: lab.of(alice, CallFailed), "the failure")
    assert lab.of(alice, CallFailed)[0].status == 500


def test_lossy_link_still_completes_calls_through_retransmissions() -> None:
    seen: set[tuple[Address, Address, bytes]] = set()

    def drop_first_of_each_kind(data: bytes, src: Address, dst: Address) -> bool:
        """Lose the first copy of every message (by start line and CSeq) on every hop."""
        start = data.split(b"\r\n", 1)[0].split(b" sip:")[0]
        cseq = data.split(b"\r\nCSeq: ", 1)[1].split(b"\r\n", 1)[0]
        key = (src, dst, start + b" " + cseq)
        if key in seen:
            return False
        seen.add(key)
        return True

    lab = make_lab(drop=drop_first_of_each_kind)
    alice, bob = two_phones(lab, ring_time_s=0.5)
    call_id = alice.invite(lab.accounts[1].aor, lab.net.now)
    lab.wait(lambda: lab.of(alice, CallAnswered) and lab.of(bob, CallAnswered), "the answer", 60)
    alice.hangup(call_id, lab.net.now)
    lab.wait(lambda: lab.of(alice, CallEnded) and lab.of(bob, CallEnded), "the end", within_s=60)
    assert lab.of(alice, CallEnded)[0].status == 200
    assert len(seen) >= 20  # every message kind on every hop was lost once, e.g.:
    bob_addr = bob.local_addr
    assert {
        (REGISTRAR, bob_addr, b"INVITE 2 INVITE"),
        (bob_addr, REGISTRAR, b"SIP/2.0 200 OK 2 INVITE"),
        (REGISTRAR, bob_addr, b"ACK 2 ACK"),
    } <= seen
    assert lab.registrar.counters["retransmissions_received"] > 0


def test_garbage_is_counted_and_answered_400_while_calls_go_on(lab: Lab) -> None:
    alice, bob = two_phones(lab, ring_time_s=0.5)
    peer = RawPeer(lab.net, ("127.0.0.1", 5999))
    call_id = alice.invite(lab.accounts[1].aor, lab.net.now)
    peer.send(b"\x00\xff garbage that is not SIP\r\n\r\n")
    peer.send(raw_request("INVITE", "sip:x@127.0.0.1", extra="Max-Forwards: many"))
    peer.send(raw_request("OPTIONS", "sip:127.0.0.1", extra="CSeq: 2 OPTIONS"))
    lab.wait(lambda: lab.of(alice, CallAnswered), "the answer")
    alice.hangup(call_id, lab.net.now)
    lab.wait(lambda: lab.of(bob, CallEnded), "the end")
    assert lab.registrar.counters["malformed"] == 3
    malformed = [e for e in lab.registrar_events if isinstance(e, MalformedMessageReceived)]
    assert [(e.addr, e.answered) for e in malformed] == [
        (peer.addr, None),
        (peer.addr, 400),
        (peer.addr, 400),
    ]
    assert [r.status for r in peer.responses()] == [400, 400]
    assert "max-forwards" in peer.responses()[0].reason.lower()


def test_requests_for_the_registrar_itself_and_refused_routes(lab: Lab) -> None:
    bob = lab.agent(lab.accounts[1], 5072)
    lab.register(bob)
    peer = RawPeer(lab.net, ("127.0.0.1", 5999))
    bob_uri = f"sip:{lab.accounts[1].username}@127.0.0.1"
    cases = {
        "options": raw_request("OPTIONS", "sip:127.0.0.1:5060"),
        "max-forwards": raw_request("INVITE", bob_uri).replace(b"Forwards: 70", b"Forwards: 0"),
        "relay": raw_request("MESSAGE", "sip:someone@192.0.2.7"),
        "cancel": raw_request("CANCEL", bob_uri),
        "register-elsewhere": raw_request("REGISTER", "sip:example.org"),
        "in-dialog-for-us": raw_request("BYE", bob_uri, to=f"<{bob_uri}>;tag=x", name="b1"),
        "unresolvable": raw_request("BYE", "sip:b@host.example", to="<sip:b@h>;tag=x", name="b2"),
        "loop": raw_request(
            "BYE", "sip:b@host.example;maddr=127.0.0.1", to="<sip:b@h>;tag=x", name="b3"
        ),
    }
    for data in cases.values():
        peer.send(data)
    lab.run(1)
    by_call = {r.call_id: r for r in peer.responses()}
    status = {name: by_call[parse_message(data).call_id].status for name, data in cases.items()}
    assert status == {
        "options": 200,
        "max-forwards": 483,
        "relay": 403,
        "cancel": 481,
        "register-elsewhere": 404,
        "in-dialog-for-us": 404,
        "unresolvable": 503,
        "loop": 482,
    }
    assert "REGISTER" in (by_call["raw-options@127.0.0.1"].headers.get("Allow") or "")
    assert lab.of(bob, IncomingCall) == []


def test_outside_callers_reach_registered_users_without_credentials(lab: Lab) -> None:
    """Like Kamailio's default policy: only our own users must authenticate."""
    bob = lab.agent(lab.accounts[1], 5072, ring_time_s=0)
    lab.register(bob)
    peer = RawPeer(lab.net, ("127.0.0.1", 5999))
    contact = "Contact: <sip:raw@127.0.0.1:5999>"
    peer.send(raw_request("INVITE", f"sip:{lab.accounts[1].username}@127.0.0.1", extra=contact))
    lab.wait(lambda: lab.of(bob, IncomingCall), "the incoming call")
    lab.run(0.1)
    assert [r.status for r in peer.responses()][:2] == [100, 200]
    assert peer.responses()[1].headers.get_all("Record-Route") == [lab.registrar.record_route]


# -- real sockets --------------------------------------------------------------------------------

DEADLINE_S = 10.0


class SocketPhone:
    """A UserAgent on a real socket from ``callmeter.transport``, its events collected."""

    def __init__(self, account: Account, proxy: Address, transport: str, **options: object) -> None:
        config = UserAgentConfig(
            username=account.username, domain=account.domain, proxy=proxy,
            password=account.password,
        )  # fmt: skip
        self.ua = UserAgent(replace(config, **options), transport=transport.upper())  # type: ignore[arg-type]
        self.kind = transport
        self.events: list[Event] = []

    async def open(self) -> SocketPhone:
        opener = open_udp if self.kind == "udp" else open_tcp
        self.transport = await opener(self.ua, "127.0.0.1", 0, on_activity=self._drain)
        self.ua.local_addr = self.transport.local_address
        return self

    def _drain(self) -> None:
        while (event := self.ua.next_event()) is not None:
            self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def command(self, action: Callable[[float], object]) -> None:
        action(asyncio.get_running_loop().time())
        self._drain()
        self.transport.flush()

    async def close(self) -> None:
        self.transport.close()
        await self.transport.wait_closed()


async def until(predicate: Callable[[], object], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


async def call_through(running: RunningRegistrar, kind: str) -> None:
    alice_account, bob_account = running.accounts[:2]
    alice = await SocketPhone(alice_account, running.address, kind).open()
    bob = await SocketPhone(bob_account, running.address, kind, ring_time_s=0.05).open()
    try:
        for phone in (alice, bob):
            phone.command(phone.ua.register)
        await until(lambda: alice.of(Registered) and bob.of(Registered), "registrations")
        call_id = ""

        def dial(now: float) -> None:
            nonlocal call_id
            call_id = alice.ua.invite(bob_account.aor, now)

        alice.command(dial)
        await until(lambda: alice.of(CallAnswered) and bob.of(CallAnswered), "the answer")
        alice.command(lambda now: alice.ua.hangup(call_id, now))
        await until(lambda: alice.of(CallEnded) and bob.of(CallEnded), "the end of the call")
        assert alice.of(CallEnded)[0].status == 200
        assert [e.status for e in alice.of(CallRinging)] == [180]
        counters = running.registrar.counters
        assert counters["forwarded_INVITE"] == 1 and counters["forwarded_BYE"] == 1
        assert counters["forwarded_ACK"] == 1 and counters["registers"] == 2
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_real_sockets_call_through_running_registrar(kind: str) -> None:
    async def scenario() -> None:
        async with RunningRegistrar(transport=kind, accounts=2) as running:
            assert running.address[0] == "127.0.0.1" and running.address[1] > 0
            assert running.registrar.local_addr == running.address
            assert len(running.registrar.accounts) == 2
            await call_through(running, kind)

    run(scenario())


def test_serve_announces_writes_credentials_and_answers_options(tmp_path: Path) -> None:
    async def scenario() -> None:
        stop, lines = asyncio.Event(), []
        port = free_port("udp")
        path = tmp_path / "accounts.csv"
        task = asyncio.create_task(
            serve("127.0.0.1", port, "udp", 3, path, announce=lines.append, stop=stop)
        )
        await until(lambda: lines, "the announcement")
        assert f"listening on udp:127.0.0.1:{port}" in lines[0] and str(path) in lines[0]
        assert len(read_credentials(path)) == 3
        target = ("127.0.0.1", port)
        assert await asyncio.to_thread(sip_options, target, f"sip:127.0.0.1:{port}") == 200
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)

    run(scenario())


def test_running_registrar_refuses_a_wildcard_address_and_unknown_transports() -> None:
    with pytest.raises(ValueError, match=r"cannot bind 0\.0\.0\.0"):
        RunningRegistrar("0.0.0.0")
    with pytest.raises(ValueError, match="transport must be one of udp, tcp"):
        RunningRegistrar(transport="sctp")


# -- digest checks -------------------------------------------------------------------------------

_REQUIRED = ["username", "realm", "nonce", "uri", "response"]
_OPTIONAL = ["algorithm", "cnonce", "qop", "nc", "opaque", "domain", "Stale"]
_SAFE = st.sampled_from(["cm-1", "127.0.0.1", "auth", "00000001", "MD5", "sip:x@y", "a b"])
_ODD = st.text(alphabet='ab\\"\t ,=\x01', max_size=6)


@st.composite
def credential_texts(draw: st.DrawFn) -> str:
    """Mostly the plain form clients send, sometimes broken in one place."""
    optional = draw(st.lists(st.sampled_from(_OPTIONAL), unique=True, max_size=5))
    names = list(draw(st.permutations(_REQUIRED + optional)))
    flaw = draw(st.sampled_from(["none", "none", "none", "dup", "value", "sep", "drop"]))
    if flaw == "dup":
        names.append(draw(st.sampled_from(names)).upper())
    elif flaw == "drop":
        names.remove(draw(st.sampled_from(names)))
    odd = draw(st.integers(0, len(names) - 1)) if flaw == "value" else -1
    parts = []
    for index, name in enumerate(names):
        value = draw(_ODD if index == odd else _SAFE)
        if name.lower() == "nc" and index != odd:
            value = draw(st.sampled_from(["00000001", "0000000a", "1"]))
        quoted = draw(st.booleans()) or not value or " " in value
        parts.append(f'{name}{draw(st.sampled_from(["=", " = "]))}'
                     + (f'"{value}"' if quoted else value))  # fmt: skip
    separators = [", ", ","] + ([",,", " ,", ",\r\n "] if flaw == "sep" else [])
    scheme = draw(st.sampled_from(["Digest ", "digest  ", " Digest\t"]))
    if flaw == "sep":
        scheme = draw(st.sampled_from([scheme, "Digest", "Basic ", "Digest\r\n "]))
    return scheme + draw(st.sampled_from(separators)).join(parts)


def _parsed(parse: Callable[[str], Credentials], text: str) -> Credentials | str:
    try:
        return parse(text)
    except ParseError as error:
        return f"ParseError: {error}"


@given(credential_texts())
@settings(max_examples=400, deadline=None)
def test_fast_credentials_parser_agrees_with_the_core_parser(text: str) -> None:
    assert _parsed(parse_credentials, text) == _parsed(Credentials.parse, text)


def test_fast_credentials_parser_reads_what_user_agents_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = DigestSession("cm-1", "secret")
    challenge = Challenge.parse('Digest realm="r", nonce="abc", qop="auth", algorithm=MD5')
    sent = session.authorize(challenge, "REGISTER", "sip:r", "c0ffee")
    sipp = ('Digest username="a",realm="r",cnonce="6b8b4567",nc=00000001,qop=auth,'
            'uri="sip:127.0.0.1:5060",nonce="n",response="0123",algorithm=MD5')  # fmt: skip
    expected = Credentials.parse(sipp)
    assert sent is not None
    with monkeypatch.context() as patched:  # prove the fast path alone reads both
        patched.setattr(Credentials, "parse", None)
        assert parse_credentials(sent.serialize()) == sent
        assert parse_credentials(sipp) == expected


def test_digest_guard_verdicts() -> None:
    accounts = AccountTable([Account("cm-1", "secret", "r")])
    guard = DigestGuard(accounts, "r", b"0123456789abcdef0123456789abcdef", nonce_max_age_s=30)

    def request_with(username: str, password: str, nonce: str, nc: int = 1) -> Request:
        challenge = Challenge("r", nonce, "MD5", ("auth",))
        creds = DigestSession(username, password)._answer(
            challenge, nc, "cn", "cn", "REGISTER", "sip:r", b""
        )
        assert creds is not None
        request = register_request(["<sip:a@10.0.0.1>"])
        request.headers.add("Authorization", creds.serialize())
        return request

    assert guard.check(register_request([]), "Authorization", 0.0) == (Verdict.MISSING, None)
    nonce = Challenge.parse(guard.challenge(10.0)).nonce
    ok = request_with("cm-1", "secret", nonce)
    assert guard.check(ok, "Authorization", 11.0) == (Verdict.AUTHENTICATED, "cm-1")
    assert guard.check(ok, "Authorization", 11.0)[0] is Verdict.STALE  # nc replayed
    assert guard.check(request_with("cm-1", "secret", nonce, nc=2), "Authorization", 12.0)[0] is (
        Verdict.AUTHENTICATED
    )
    assert guard.check(request_with("cm-1", "wrong", nonce, 3), "Authorization", 12.0)[0] is (
        Verdict.REJECTED
    )
    assert guard.check(request_with("cm-9", "secret", nonce), "Authorization", 12.0)[0] is (
        Verdict.REJECTED
    )
    old = request_with("cm-1", "secret", nonce, 4)
    assert guard.check(old, "Authorization", 41.0)[0] is Verdict.STALE  # older than 30 s
    foreign = request_with("cm-1", "secret", "not-one-of-ours")
    assert guard.check(foreign, "Authorization", 12.0)[0] is Verdict.STALE
    assert "stale=true" in guard.challenge(12.0, stale=True)


# -- sans-I/O ------------------------------------------------------------------------------------

REGISTRAR_DIR = Path(__file__).resolve().parents[1] / "callmeter" / "registrar"
REGISTRAR_CORE = sorted(p for p in REGISTRAR_DIR.glob("*.py") if p.name != "server.py")


def test_registrar_core_modules_import_no_io() -> None:
    """Everything but the asyncio shell (server.py) is sans-I/O, like callmeter.sip."""
    from tests.test_sans_io import FORBIDDEN, imported_modules

    assert {p.name for p in REGISTRAR_CORE} >= {"proxy.py", "location.py", "guard.py"}
    for path in REGISTRAR_CORE:
        assert imported_modules(path) & FORBIDDEN == set(), path.name
    assert "asyncio" in imported_modules(REGISTRAR_DIR / "server.py")  # the check can fail


def test_local_identity_tells_our_uris_and_routes_from_neighbours_on_loopback() -> None:
    identity = LocalIdentity("example.test", ("localhost",))
    identity.update(("127.0.0.1", 5070), "TCP")
    assert identity.record_route == "<sip:127.0.0.1:5070;transport=tcp;lr>"
    uri = parse_uri
    assert identity.is_local(uri("sip:a@example.test")) and identity.is_local(
        uri("sip:a@LOCALHOST")
    )
    assert identity.is_local(uri("sip:a@127.0.0.1:5070"))
    assert not identity.is_local(uri("sip:a@127.0.0.1:5071"))  # a phone on the same host
    assert identity.local_aor(uri("sip:a@127.0.0.1")) == "sip:a@example.test"
    assert identity.local_aor(uri("sip:127.0.0.1")) is None
    assert identity.is_us(uri("sip:127.0.0.1:5070;lr")) and not identity.is_us(
        uri("sip:127.0.0.1;lr")
    )
    request = register_request([])
    request.headers.add("Route", "<sip:127.0.0.1:5070;lr>, <sip:127.0.0.1;lr>")
    identity.strip_own_route(request)
    assert request.headers.get_all("Route") == ["<sip:127.0.0.1;lr>"]  # a proxy on 5060 stays
    identity.strip_own_route(request)
    assert request.headers.get_all("Route") == ["<sip:127.0.0.1;lr>"]
