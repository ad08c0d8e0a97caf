"""Real SIP peers on loopback for interop tests and benchmarks.

Each peer is a real program started headless in its own working directory, bound to
127.0.0.1 only, on ports picked with `free_port` (never 5060), and stopped by its pid:
SIGTERM, then SIGKILL to the process group it leads (its own session) if it lingers.
Handles are context managers; a process still alive at interpreter exit is stopped too.

SIPp (`Sipp`, Debian package sip-tester)
    `Sipp.uas()`, `Sipp.uac(target)`, `Sipp.register(...)`, `Sipp.call_with_auth(...)`,
    `Sipp.scenario(xml, target)` and the raw `Sipp.start(args)`. Exit code 0 means no
    failed call; SIGTERM also exits 0 when no call failed. Gotchas:
    - Without `-p` SIPp binds 5060, without `-cp`/`-ci` its UDP control socket binds
      0.0.0.0:8888, and without `-mp`/`-mi` its media sockets bind 6000 and 6002: the
      harness passes all of them (plus `-i 127.0.0.1 -bind_local`).
    - SIPp sends every request to the remote host, whatever the Request-URI and route set.
      The built-in `uas` does not echo Record-Route, so behind a record-routing proxy the
      caller's ACK/BYE reach the proxy with no Route and are refused: use
      `Sipp.uas(record_route=True)` (tests/data/sipp/uas_record_route.xml) there.
    - The built-in `uas` waits 4 s after each BYE (timewait) before a call counts as done;
      stop a UAS with `.stop()` rather than waiting for `-m`.
    - `-buff_size 4194304` always: with the default socket buffer calls fail from about
      2,000 CPS on dropped UDP.
    - A REGISTER-only client can register a contact for a port it then gives to a UAS:
      `Sipp.register(..., port=p)` exits, then `Sipp.uas(port=p)` answers calls for it.

Kamailio (`Kamailio.start(accounts)`, packages kamailio + kamailio-sqlite-modules)
    Registrar + record-routing proxy with digest auth (qop=auth, MD5) against a sqlite
    subscriber table holding plaintext passwords (`calculate_ha1 yes`), usrloc in memory,
    `children=1` (with two UDP workers a 180 can overtake the 200), UDP and TCP on the same
    port. What it asks for:
    - REGISTER: 401 with realm = the To host (127.0.0.1); any AOR user in the table.
    - Initial requests whose From URI is local (host 127.0.0.1 or localhost *with
      Kamailio's port*, e.g. sip:alice@127.0.0.1:PORT, as baresip sends it): 407 with
      realm = the From host, unless started with `invite_auth=False`. A From at any other
      host:port is proxied without credentials, so plain `sipp -sn uac` can load it.
    - Request-URI not local: 403. Callee not registered: 404. Otherwise the request is
      forwarded to the registered contact(s), INVITE with Record-Route.
    Gotchas: aliases carry the port; an alias without port makes every 127.0.0.1 URI
    "myself", and loose_route() then takes in-dialog requests to UAs on loopback for
    strict-routed ones. `kamcmd` over a unix socket in the working directory is the oracle
    for the location table (`.contacts(user)`); `.options(user)` probes through the proxy.

baresip (`Baresip.start(user, password, registrar)`, package baresip-core)
    A user agent that registers, auto-answers and plays a generated WAV (16-bit 8 kHz mono)
    as microphone; commands go through its `ctrl_tcp` module (netstring-framed JSON), e.g.
    `.dial(uri)`, `.hangup()`, `.wait_event("CALL_ESTABLISHED")`. Gotchas:
    - `net_interface 127.0.0.1` (the name `lo` fails). Its DNS client still binds
      0.0.0.0/[::] ephemeral ports; `dns_server 127.0.0.1:53` keeps any query on loopback.
    - It binds UDP and TCP on the SIP port and TCP on port + 1 (TLS): the harness picks
      two consecutive free ports.
    - RTP ports are drawn from `rtp_ports` and rounded down to even (RTCP on +1): an odd
      lower bound lets the port escape below the range.
    - When the WAV ends, aufile raises an audio error and the menu module hangs the call
      up: the WAV must outlast the call (`wav_seconds`, default 60).
    - The stdio UI needs a terminal; it is not loaded. Its REGISTER has no Expires header
      (`;expires=` on the Contact) and its Contact user is `user-0x<pointer>`.
    - Its INVITE and its 200 to OPTIONS carry an empty `Supported:` header; it answers an
      INVITE with 180 then `200 Answering` (no 100 Trying).
    - Events sent before the ctrl connection opens (an early REGISTER_OK/FAIL) are lost:
      poll `.registration()` ("OK"/"ERR", from `reginfo`) instead.

tshark (`Tshark.start(capture_filter)`)
    Captures on `lo` to a pcapng file; needs root or the dumpcap capabilities. After
    `.stop()`, `.udp_payloads("sip")` gives the datagrams' bytes and `.rtp_streams()` the
    `-z rtp,streams` table (Lost = expected - received, negative with duplicates; jitter
    is the RFC 3550 running estimate). Gotchas:
    - "Capturing on 'Loopback: lo'" is printed before packets are really captured (the
      first few hundred ms are lost), and a stop can drop packets not yet handed over:
      start and stop send marker datagrams to a private port until one is in the file.
    - Media ports alone carry no SDP: RTP is found with `--enable-heuristic rtp_udp`.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import tempfile
import time
import wave
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, Self, TypeVar

LOOPBACK = "127.0.0.1"
DATA_DIR = Path(__file__).resolve().parent / "data"
SIPP_SCENARIO_DIR = DATA_DIR / "sipp"

SIPP = "sipp"
KAMAILIO = "kamailio"
KAMCMD = "kamcmd"
BARESIP = "baresip"
TSHARK = "tshark"

KAMAILIO_MODULES = next(
    (path for path in sorted(Path("/usr/lib").glob("*/kamailio/modules")) if path.is_dir()),
    Path("/usr/lib/x86_64-linux-gnu/kamailio/modules"),
)
KAMAILIO_SQL = Path("/usr/share/kamailio/db_sqlite")
BARESIP_MODULES = Path("/usr/lib/baresip/modules")

SIPP_BUFF_SIZE = 4_194_304

PortKind = Literal["udp", "tcp"]
Transport = Literal["udp", "tcp"]
T = TypeVar("T")


class PeerError(RuntimeError):
    """A peer failed to start, answer or stop as expected; the message carries its log."""


# --------------------------------------------------------------------------- ports, polling


def _bindable(port: int, kind: PortKind) -> bool:
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, sock_type) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(kind: PortKind = "udp", *, span: int = 1) -> int:
    """A port on 127.0.0.1 that is free for UDP *and* TCP, picked by the kernel for `kind`.

    SIP peers bind both protocols on their port, so both are checked. With `span` > 1 the
    ports `port .. port + span - 1` are all free (baresip's TLS port, SIPp's media pair).
    Another process may still take it before the caller binds: bind soon.
    """
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    for _ in range(500):
        with socket.socket(socket.AF_INET, sock_type) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port + span > 65536:
            continue
        candidates = range(port, port + span)
        if all(_bindable(p, k) for p in candidates for k in ("udp", "tcp")):
            return port
    raise PeerError(f"no {span} consecutive free port(s) on {LOOPBACK}")


def wait_until(
    predicate: Callable[[], T | Literal[False] | None],
    timeout: float,
    *,
    what: str,
    interval: float = 0.02,
) -> T:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not after {timeout:g} s")
        time.sleep(interval)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# Temp directories the harness created; removed at exit unless CALLMETER_KEEP_PEER_DIRS=1.
_OWNED_DIRS: list[Path] = []


def _workdir(workdir: Path | None, name: str) -> Path:
    if workdir is None:
        created = Path(tempfile.mkdtemp(prefix=f"callmeter-{name}-"))
        _OWNED_DIRS.append(created)
        return created
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


# --------------------------------------------------------------------------- processes

_LIVE: weakref.WeakSet[PeerProcess] = weakref.WeakSet()


@atexit.register
def _clean_up() -> None:
    for peer in list(_LIVE):
        peer.stop(timeout=2.0)
    if os.environ.get("CALLMETER_KEEP_PEER_DIRS") != "1":
        for directory in _OWNED_DIRS:
            shutil.rmtree(directory, ignore_errors=True)


class PeerProcess:
    """One peer program started by the harness, stopped by its pid.

    stdout and stderr go to `<name>.stdout.log` / `<name>.stderr.log` in `workdir`. The
    default workdir is a fresh temp directory, kept until the interpreter exits (set
    CALLMETER_KEEP_PEER_DIRS=1 to keep it); tests pass pytest's `tmp_path`. The program
    runs in a new session, so the group it leads holds exactly what it forked.
    """

    name: ClassVar[str] = "peer"

    def __init__(
        self, argv: Sequence[str], workdir: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.argv = [str(arg) for arg in argv]
        self.workdir = workdir
        self.stdout_path = workdir / f"{self.name}.stdout.log"
        self.stderr_path = workdir / f"{self.name}.stderr.log"
        full_env = {**os.environ, **env} if env is not None else None
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._popen = subprocess.Popen(
                self.argv,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                env=full_env,
            )
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has ended (negative: killed by that signal)."""
        return self._popen.poll()

    def running(self) -> bool:
        return self._popen.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the process to end by itself; PeerError (with its log) after `timeout`."""
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise PeerError(
                f"{self.name} (pid {self.pid}) still running after {timeout:g} s\n{self.log()}"
            ) from None

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL to its process group after `timeout` s; the exit code."""
        self._before_stop()
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                # The leader is alive, so the group id is still ours.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self._popen.wait(timeout)
        _LIVE.discard(self)
        return self._popen.returncode

    def _before_stop(self) -> None:
        """Hook: release sockets held towards the process."""

    def log(self, lines: int = 30) -> str:
        """The last lines of stdout and stderr, for assertion messages."""
        return (
            f"--- {self.name} {' '.join(self.argv)}\n"
            f"--- stdout:\n{_tail(self.stdout_path, lines)}\n"
            f"--- stderr:\n{_tail(self.stderr_path, lines)}"
        )

    def _check_alive(self) -> None:
        if self._popen.poll() is not None:
            raise PeerError(f"{self.name} exited with {self._popen.returncode}\n{self.log()}")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- SIPp


class Sipp(PeerProcess):
    """A SIPp run; build one with `uas`, `uac`, `register`, `call_with_auth` or `scenario`."""

    name = "sipp"

    def __init__(
        self,
        args: Sequence[str],
        *,
        port: int | None = None,
        transport: Transport = "udp",
        workdir: Path | None = None,
        trace_msg: bool = False,
        stat_period_s: int = 1,
    ) -> None:
        workdir = _workdir(workdir, self.name)
        self.port = port if port is not None else free_port(transport)
        self.transport = transport
        self.address = f"{LOOPBACK}:{self.port}"
        self.screen_path = workdir / "sipp_screen.log"
        self.error_path = workdir / "sipp_errors.log"
        self.stat_path = workdir / "sipp_stat.csv"
        self.message_path = workdir / "sipp_messages.log"
        argv = [
            SIPP,
            *args,
            *("-i", LOOPBACK, "-bind_local", "-p", str(self.port)),
            *("-t", "u1" if transport == "udp" else "t1"),
            *("-mi", LOOPBACK, "-mp", str(free_port("udp", span=4))),
            *("-ci", LOOPBACK, "-cp", str(free_port("udp"))),
            *("-nostdin", "-buff_size", str(SIPP_BUFF_SIZE)),
            *("-trace_screen", "-screen_file", str(self.screen_path)),
            *("-trace_err", "-error_file", str(self.error_path)),
            *("-trace_stat", "-stf", str(self.stat_path), "-fd", str(stat_period_s)),
        ]
        if trace_msg:
            argv += ["-trace_msg", "-message_file", str(self.message_path)]
        super().__init__(argv, workdir)

    @classmethod
    def start(cls, args: Sequence[str], **options: Any) -> Sipp:
        """Raw SIPp with `args` (scenario, target, -m ...); options as for the constructor."""
        return cls(args, **options)

    @classmethod
    def uas(cls, *, record_route: bool = False, extra: Sequence[str] = (), **options: Any) -> Sipp:
        """A UAS answering every INVITE with 180 then 200 (built-in `uas`).

        `record_route=True` echoes Record-Route, needed behind a record-routing proxy.
        """
        if record_route:
            scenario = ["-sf", str(SIPP_SCENARIO_DIR / "uas_record_route.xml")]
        else:
            scenario = ["-sn", "uas"]
        return cls([*scenario, *extra], **options)

    @classmethod
    def uac(
        cls,
        target: str,
        *,
        calls: int = 1,
        rate: float = 10.0,
        call_duration_ms: int = 0,
        service: str = "service",
        extra: Sequence[str] = (),
        **options: Any,
    ) -> Sipp:
        """`calls` calls (built-in `uac`) to sip:service@target at `rate` calls/s, then exit."""
        return cls(
            [
                *("-sn", "uac", target),
                *("-m", str(calls), "-r", f"{rate:g}", "-d", str(call_duration_ms)),
                *("-s", service),
                *extra,
            ],
            **options,
        )

    @classmethod
    def scenario(
        cls,
        xml: Path | str,
        target: str | None = None,
        *,
        calls: int | None = 1,
        service: str | None = None,
        credentials: tuple[str, str] | None = None,
        keys: Mapping[str, str] | None = None,
        extra: Sequence[str] = (),
        **options: Any,
    ) -> Sipp:
        """A custom scenario (a path, or a file name under tests/data/sipp/).

        `credentials` = (user, password) for `[authentication]`; `keys` set `[keyword]`s.
        """
        path = Path(xml)
        if not path.is_absolute() and not path.exists():
            path = SIPP_SCENARIO_DIR / path
        args = ["-sf", str(path)]
        if target is not None:
            args.append(target)
        if calls is not None:
            args += ["-m", str(calls)]
        if service is not None:
            args += ["-s", service]
        if credentials is not None:
            args += ["-au", credentials[0], "-ap", credentials[1]]
        for keyword, value in (keys or {}).items():
            args += ["-key", keyword, value]
        return cls([*args, *extra], **options)

    @classmethod
    def register(
        cls, registrar: str, *, user: str, password: str, expires_s: int = 3600, **options: Any
    ) -> Sipp:
        """REGISTER `user` at `registrar` (host:port): expects 401, then 200 with credentials.

        The contact is 127.0.0.1:`port` (pass `port=` to register for a UAS started later).
        """
        return cls.scenario(
            "register_auth.xml",
            registrar,
            service=user,
            credentials=(user, password),
            keys={"expires": str(expires_s)},
            **options,
        )

    @classmethod
    def call_with_auth(
        cls,
        proxy: str,
        *,
        caller: str,
        password: str,
        callee: str,
        calls: int = 1,
        rate: float = 10.0,
        call_duration_ms: int = 0,
        **options: Any,
    ) -> Sipp:
        """Calls from `caller` (digest credentials) to `callee` through `proxy` (host:port).

        Each call: INVITE, 407, ACK, INVITE with Proxy-Authorization, 200, ACK, BYE along
        the Record-Route set.
        """
        return cls.scenario(
            "uac_auth.xml",
            proxy,
            calls=calls,
            service=callee,
            credentials=(caller, password),
            keys={"caller": caller},
            extra=["-r", f"{rate:g}", "-d", str(call_duration_ms)],
            **options,
        )

    def stats(self) -> dict[str, str]:
        """The last row of the `-trace_stat` CSV, by column name ({} before the first dump)."""
        try:
            rows = [
                line.rstrip(";").split(";")
                for line in self.stat_path.read_text(errors="replace").splitlines()
                if line.strip()
            ]
        except FileNotFoundError:
            return {}
        if len(rows) < 2:
            return {}
        return dict(zip(rows[0], rows[-1], strict=False))

    def counter(self, name: str) -> int:
        """One cumulative counter from `stats()`, e.g. "SuccessfulCall" or "FailedCall"."""
        return int(self.stats().get(f"{name}(C)", "0"))

    def log(self, lines: int = 30) -> str:
        return (
            f"{super().log(lines)}\n--- screen:\n{_tail(self.screen_path, lines)}"
            f"\n--- errors:\n{_tail(self.error_path, lines)}"
        )


# --------------------------------------------------------------------------- a SIP probe


def sip_options(
    target: tuple[str, int], request_uri: str, *, timeout: float = 2.0, retransmit_s: float = 0.5
) -> int | None:
    """Send OPTIONS over UDP from an ephemeral socket; the final status code, None if none.

    The From is sip:probe@127.0.0.1:<ephemeral port>, which Kamailio does not take as
    local, so it is never challenged. Retransmits every `retransmit_s` until `timeout`.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
        token = secrets.token_hex(8)
        request = (
            f"OPTIONS {request_uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bK{token};rport\r\n"
            f"From: <sip:probe@{LOOPBACK}:{port}>;tag={token}\r\n"
            f"To: <{request_uri}>\r\n"
            f"Call-ID: {token}@{LOOPBACK}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\n"
            "Accept: application/sdp\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while (now := time.monotonic()) < deadline:
            if now >= next_send:
                sock.sendto(request, target)
                next_send = now + retransmit_s
            sock.settimeout(max(0.001, min(next_send, deadline) - now))
            try:
                data = sock.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                continue
            status = _final_status(data, token)
            if status is not None:
                return status
    return None


def _final_status(data: bytes, call_id_token: str) -> int | None:
    start_line, _, rest = data.partition(b"\r\n")
    parts = start_line.split(b" ", 2)
    if len(parts) < 2 or parts[0] != b"SIP/2.0" or call_id_token.encode() not in rest:
        return None
    status = int(parts[1])
    return status if status >= 200 else None


# --------------------------------------------------------------------------- Kamailio

_KAMAILIO_CFG = r"""
debug=2
log_stderror=yes
children=1
tcp_children=1
auto_aliases=no
dns=no
rev_dns=no
listen=udp:127.0.0.1:@PORT@
listen=tcp:127.0.0.1:@PORT@
# With the port: an alias without one would make every 127.0.0.1 URI "myself".
alias="127.0.0.1:@PORT@"
alias="localhost:@PORT@"

mpath="@MODULES@"
loadmodule "db_sqlite.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "ctl.so"

modparam("ctl", "binrpc", "unix:@CTL@")
modparam("usrloc", "db_mode", 0)
modparam("auth_db", "db_url", "sqlite://@DB@")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")

request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {
        sl_send_reply("200", "Keepalive");
        exit;
    }
    if (has_totag()) {
        route(WITHINDLG);
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            route(RELAY);
        }
        exit;
    }
    # Absorb retransmissions of requests being processed.
    if (!is_method("ACK")) {
        if (t_precheck_trans()) {
            t_check_trans();
            exit;
        }
        t_check_trans();
    }
    if (is_method("REGISTER")) {
        route(REGISTRAR);
        exit;
    }
#!ifdef WITH_INVITE_AUTH
    if (from_uri == myself) {
        if (!proxy_authorize("$fd", "subscriber")) {
            proxy_challenge("$fd", "1");
            exit;
        }
        consume_credentials();
    }
#!endif
    if (uri != myself) {
        sl_send_reply("403", "Relaying Forbidden");
        exit;
    }
    if (is_method("INVITE|SUBSCRIBE")) {
        record_route();
    }
    if (!lookup("location")) {
        t_newtran();
        t_reply("404", "Not Found");
        exit;
    }
    route(RELAY);
}

route[WITHINDLG] {
    if (loose_route()) {
        route(RELAY);
    }
    if (is_method("ACK")) {
        # ACK of a non-2xx final response: the transaction absorbs it.
        if (t_check_trans()) {
            route(RELAY);
        }
        exit;
    }
    sl_send_reply("404", "Not here");
    exit;
}

route[REGISTRAR] {
    if (!www_authorize("$td", "subscriber")) {
        www_challenge("$td", "1");
        exit;
    }
    if (!save("location")) {
        sl_reply_error();
    }
    exit;
}

route[RELAY] {
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}
"""


class Kamailio(PeerProcess):
    """Kamailio as registrar + proxy with digest auth; build one with `Kamailio.start`."""

    name = "kamailio"

    def __init__(
        self, argv: Sequence[str], workdir: Path, *, port: int, db_path: Path, ctl_socket: Path
    ) -> None:
        self.port = port
        self.address = f"{LOOPBACK}:{port}"
        self.domain = LOOPBACK
        self.db_path = db_path
        self.config_path = workdir / "kamailio.cfg"
        self.ctl_socket = ctl_socket
        super().__init__(argv, workdir)

    @classmethod
    def start(
        cls,
        accounts: Mapping[str, str],
        *,
        port: int | None = None,
        invite_auth: bool = True,
        workdir: Path | None = None,
        shm_mb: int = 1024,
        ready_timeout: float = 15.0,
    ) -> Kamailio:
        """Write config and subscriber db, run `kamailio -DD -E`, return once it answers.

        `accounts` maps user to plaintext password. `invite_auth=False` proxies calls from
        local users without a 407 challenge (REGISTER is always challenged).
        """
        workdir = _workdir(workdir, cls.name)
        port = port if port is not None else free_port("udp")
        db_path = workdir / "subscriber.sqlite"
        _create_subscriber_db(db_path, accounts)
        ctl_socket = workdir / "kamailio_ctl"
        if len(str(ctl_socket)) > 100:  # a unix socket path holds at most 107 bytes
            ctl_socket = _workdir(None, "kamctl") / "ctl"
        defines = "#!define WITH_INVITE_AUTH\n" if invite_auth else ""
        config = (
            _KAMAILIO_CFG.replace("@PORT@", str(port))
            .replace("@CTL@", str(ctl_socket))
            .replace("@DB@", str(db_path))
            .replace("@MODULES@", f"{KAMAILIO_MODULES}/")
        )
        config_path = workdir / "kamailio.cfg"
        config_path.write_text(f"#!KAMAILIO\n{defines}{config}")
        argv = [
            KAMAILIO,
            *("-DD", "-E", "-f", str(config_path), "-Y", str(workdir)),
            *("-m", str(shm_mb), "-P", str(workdir / "kamailio.pid")),
        ]
        kamailio = cls(argv, workdir, port=port, db_path=db_path, ctl_socket=ctl_socket)
        try:
            kamailio.wait_ready(ready_timeout)
        except BaseException:
            kamailio.stop()
            raise
        return kamailio

    def wait_ready(self, timeout: float) -> None:
        """Poll with OPTIONS until Kamailio answers (and its control socket exists)."""

        def answers() -> bool:
            self._check_alive()
            return self.ctl_socket.exists() and self.options(timeout=0.2) is not None

        try:
            wait_until(answers, timeout, what=f"kamailio on {self.address} answering OPTIONS")
        except TimeoutError as error:
            raise PeerError(f"{error}\n{self.log()}") from None

    def uri(self, user: str | None = None) -> str:
        """sip:user@127.0.0.1:port (the server itself without `user`)."""
        return f"sip:{user}@{self.address}" if user else f"sip:{self.address}"

    def options(self, user: str | None = None, *, timeout: float = 2.0) -> int | None:
        """OPTIONS to the server (200 Keepalive) or, with `user`, through it to that user:
        404 if not registered, else whatever the registered UA answers."""
        return sip_options((LOOPBACK, self.port), self.uri(user), timeout=timeout)

    def add_account(self, user: str, password: str) -> None:
        """Add a subscriber while running (auth_db reads the table on every request)."""
        _insert_accounts(self.db_path, {user: password})

    def contacts(self, user: str) -> list[str]:
        """The contact URIs registered for `user` (via `kamcmd ul.lookup`)."""
        result = subprocess.run(
            [KAMCMD, "-s", f"unix:{self.ctl_socket}", "ul.lookup", "location", user],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return [
            line.split(":", 1)[1].strip()
            for line in result.stdout.splitlines()
            if line.strip().startswith("Address:")
        ]

    def wait_registered(self, user: str, timeout: float = 10.0) -> list[str]:
        """Poll the location table until `user` has a contact; the contacts."""
        try:
            return wait_until(lambda: self.contacts(user), timeout, what=f"{user} registered")
        except TimeoutError as error:
            raise PeerError(f"{error}\n{self.log()}") from None


def _create_subscriber_db(path: Path, accounts: Mapping[str, str]) -> None:
    with contextlib.closing(sqlite3.connect(path)) as con:
        for script in ("standard-create.sql", "auth_db-create.sql"):
            con.executescript((KAMAILIO_SQL / script).read_text())
        con.commit()
    _insert_accounts(path, accounts)


def _insert_accounts(path: Path, accounts: Mapping[str, str]) -> None:
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.executemany(
            "INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)",
            [(user, LOOPBACK, password) for user, password in accounts.items()],
        )
        con.commit()


def digest_response(
    *,
    user: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    cnonce: str = "",
    nc: str = "00000001",
    qop: str = "",
) -> str:
    """RFC 2617 / RFC 3261 section 22.4 MD5 digest `response` (qop "" or "auth").

    An independent oracle for tests and the capture script; not the product's code.
    """

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    if qop:
        return md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return md5(f"{ha1}:{nonce}:{ha2}")


# --------------------------------------------------------------------------- baresip


def write_tone_wav(path: Path, seconds: float, *, frequency_hz: float = 440.0) -> Path:
    """A 16-bit 8 kHz mono sine WAV (what baresip's aufile source plays)."""
    rate = 8000
    amplitude = 8000
    frames = b"".join(
        struct.pack("<h", round(amplitude * math.sin(2 * math.pi * frequency_hz * i / rate)))
        for i in range(round(seconds * rate))
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return path


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _netstring(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


class Baresip(PeerProcess):
    """baresip with one account, auto-answer, a WAV as microphone and ctrl_tcp commands."""

    name = "baresip"

    def __init__(
        self, argv: Sequence[str], workdir: Path, *, port: int, ctrl_port: int, aor: str
    ) -> None:
        self.port = port
        self.address = f"{LOOPBACK}:{port}"
        self.ctrl_port = ctrl_port
        self.aor = aor
        self.config_dir = workdir
        self.events: list[dict[str, Any]] = []
        self._ctrl: socket.socket | None = None
        self._buffer = b""
        self._tokens = (f"t{n}" for n in range(1, 1 << 62))
        super().__init__(argv, workdir)

    @classmethod
    def start(
        cls,
        user: str,
        password: str = "",
        registrar: str | None = None,
        *,
        port: int | None = None,
        answermode: Literal["auto", "manual", "early"] = "auto",
        regint_s: int = 600,
        wav_seconds: float = 60.0,
        rtp_ports: tuple[int, int] | None = None,
        workdir: Path | None = None,
        extra_config: Sequence[str] = (),
        sip_trace: bool = False,
        ready_timeout: float = 10.0,
    ) -> Baresip:
        """Run baresip registering sip:user@`registrar` (host:port) with `password`.

        Without `registrar` it does not register and its AOR is its own address.
        `rtp_ports` (first even, both inclusive) bounds its RTP and RTCP ports.
        `sip_trace` adds `-s` (every SIP message on stdout).
        """
        workdir = _workdir(workdir, cls.name)
        port = port if port is not None else free_port("udp", span=2)
        ctrl_port = free_port("tcp")
        wav = write_tone_wav(workdir / "tone.wav", wav_seconds)
        config = [
            "poll_method epoll",
            f"sip_listen {LOOPBACK}:{port}",
            f"net_interface {LOOPBACK}",
            # Its DNS client sockets bind the wildcard address; keep any query on loopback.
            f"dns_server {LOOPBACK}:53",
            f"audio_source aufile,{wav}",
            "audio_player aubridge,nil",
            "audio_alert aubridge,nil",
            f"module_path {BARESIP_MODULES}",
            "module g711.so",
            "module aufile.so",
            "module aubridge.so",
            "module ctrl_tcp.so",
            "module_tmp account.so",
            "module_app menu.so",
            f"ctrl_tcp_listen {LOOPBACK}:{ctrl_port}",
        ]
        if rtp_ports is not None:
            if rtp_ports[0] % 2:
                # baresip rounds a random port in the range down to even: it would escape.
                raise ValueError(f"rtp_ports must start on an even port, not {rtp_ports}")
            config.append(f"rtp_ports {rtp_ports[0]}-{rtp_ports[1]}")
        (workdir / "config").write_text("\n".join([*config, *extra_config]) + "\n")
        host = registrar if registrar is not None else f"{LOOPBACK}:{port}"
        aor = f"sip:{user}@{host}"
        params = [f"answermode={answermode}", f"regint={regint_s if registrar else 0}"]
        if password:
            params.insert(0, f"auth_pass={password}")
        (workdir / "accounts").write_text(f"<{aor}>;{';'.join(params)}\n")
        (workdir / "contacts").write_text("")
        argv = [BARESIP, "-f", str(workdir), *(["-s"] if sip_trace else [])]
        baresip = cls(argv, workdir, port=port, ctrl_port=ctrl_port, aor=aor)
        try:
            baresip._connect(ready_timeout)
        except BaseException:
            baresip.stop()
            raise
        return baresip

    def _connect(self, timeout: float) -> None:
        def connected() -> socket.socket | None:
            self._check_alive()
            try:
                return socket.create_connection((LOOPBACK, self.ctrl_port), timeout=1.0)
            except OSError:
                return None

        try:
            self._ctrl = wait_until(connected, timeout, what=f"baresip ctrl_tcp {self.ctrl_port}")
        except TimeoutError as error:
            raise PeerError(f"{error}\n{self.log()}") from None

    def command(self, command: str, params: str = "", *, timeout: float = 5.0) -> dict[str, Any]:
        """Run a baresip command (menu's "dial", "hangup", "options"...); its response."""
        if self._ctrl is None:
            raise PeerError("baresip control connection is closed")
        token = next(self._tokens)
        payload = {"command": command, "params": params, "token": token}
        self._ctrl.sendall(_netstring(json.dumps(payload).encode()))
        for message in self._messages(timeout, what=f"response to {command!r}"):
            if message.get("response") and message.get("token") == token:
                if not message.get("ok"):
                    raise PeerError(f"baresip {command} {params!r} failed: {message}")
                return message
            self.events.append(message)
        raise AssertionError("unreachable")

    def dial(self, uri: str) -> dict[str, Any]:
        """Place a call to `uri`; returns once baresip accepted the command."""
        return self.command("dial", uri)

    def hangup(self) -> dict[str, Any]:
        return self.command("hangup")

    def registration(self) -> str:
        """Registration state from the `reginfo` command: "OK", "ERR", or "" while pending."""
        text = _ANSI_ESCAPE.sub("", str(self.command("reginfo").get("data", "")))
        match = re.search(r"^> \S+\s+(OK|ERR)\b", text, re.MULTILINE)
        return match.group(1) if match else ""

    def wait_event(self, event_type: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first event of `event_type` (e.g. "CALL_ESTABLISHED", "REGISTER_OK")
        received since the last wait, including ones buffered while waiting for responses."""
        for index, event in enumerate(self.events):
            if event.get("type") == event_type:
                del self.events[: index + 1]
                return event
        self.events.clear()
        for message in self._messages(timeout, what=f"baresip event {event_type}"):
            if message.get("event") and message.get("type") == event_type:
                return message
        raise AssertionError("unreachable")

    def _messages(self, timeout: float, *, what: str) -> Iterator[dict[str, Any]]:
        """Decoded netstrings from ctrl_tcp until `timeout` (then PeerError)."""
        assert self._ctrl is not None
        deadline = time.monotonic() + timeout
        while True:
            while (message := self._next_netstring()) is not None:
                yield json.loads(message)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerError(f"{what}: none after {timeout:g} s\n{self.log()}")
            self._ctrl.settimeout(remaining)
            try:
                chunk = self._ctrl.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise PeerError(f"baresip closed its control connection\n{self.log()}")
            self._buffer += chunk

    def _next_netstring(self) -> bytes | None:
        length, colon, rest = self._buffer.partition(b":")
        if not colon:
            return None
        size = int(length)
        if len(rest) < size + 1:
            return None
        self._buffer = rest[size + 1 :]
        return rest[:size]

    def _before_stop(self) -> None:
        if self._ctrl is not None:
            self._ctrl.close()
            self._ctrl = None


# --------------------------------------------------------------------------- tshark


@dataclass(frozen=True, slots=True)
class RtpStream:
    """One row of `tshark -z rtp,streams` (one direction of one SSRC)."""

    src: str
    src_port: int
    dst: str
    dst_port: int
    ssrc: int
    payload: str
    packets: int
    lost: int  # expected - received: negative with duplicates
    min_delta_ms: float  # -1 with a single packet
    mean_delta_ms: float
    max_delta_ms: float  # the largest arrival gap
    min_jitter_ms: float
    mean_jitter_ms: float  # RFC 3550 running estimate, mean over packets 2..N
    max_jitter_ms: float
    problems: bool


_RTP_STREAM_ROW = re.compile(
    r"^\s*[\d.]+\s+[\d.]+\s+(?P<src>\S+)\s+(?P<src_port>\d+)\s+(?P<dst>\S+)\s+"
    r"(?P<dst_port>\d+)\s+(?P<ssrc>0x[0-9A-Fa-f]+)\s+(?P<payload>.+?)\s+(?P<packets>\d+)\s+"
    r"(?P<lost>-?\d+)\s+\([-\d.]+%\)\s+(?P<deltas>(?:-?[\d.]+\s+){3})"
    r"(?P<jitters>-?[\d.]+\s+-?[\d.]+\s+-?[\d.]+)\s*(?P<problems>\S*)\s*$"
)


class Tshark(PeerProcess):
    """A capture on loopback to `capture.pcapng`; read it back after `stop()`.

    tshark prints "Capturing on" before packets really flow, and a stop can lose packets
    the kernel has not yet handed over, so start and stop both `sync()`: marker datagrams
    to a private port (added to the capture filter, hidden from the readers) until one
    shows up in the file.
    """

    name = "tshark"

    def __init__(
        self, argv: Sequence[str], workdir: Path, *, capture_path: Path, marker_port: int
    ) -> None:
        self.capture_path = capture_path
        self.marker_port = marker_port
        super().__init__(argv, workdir)

    @classmethod
    def start(
        cls,
        capture_filter: str,
        *,
        interface: str = "lo",
        workdir: Path | None = None,
        ready_timeout: float = 15.0,
    ) -> Tshark:
        """Capture packets matching the BPF `capture_filter`; returns once capturing."""
        workdir = _workdir(workdir, cls.name)
        capture_path = workdir / "capture.pcapng"
        marker_port = free_port("udp")
        bpf = f"({capture_filter}) or (udp dst port {marker_port})"
        argv = [TSHARK, "-n", "-i", interface, "-f", bpf, "-w", str(capture_path)]
        tshark = cls(argv, workdir, capture_path=capture_path, marker_port=marker_port)
        try:
            tshark.sync(ready_timeout)
        except BaseException:
            tshark.stop()
            raise
        return tshark

    def sync(self, timeout: float = 15.0) -> None:
        """Return once everything sent before this call is in the capture file."""
        # ASCII hex: its first byte never has RTP version 2, so no heuristic takes it.
        marker = secrets.token_hex(8).encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:

            def marker_captured() -> bool:
                self._check_alive()
                sock.sendto(marker, (LOOPBACK, self.marker_port))
                if not self.capture_path.exists():
                    return False
                read = [TSHARK, "-n", "-r", str(self.capture_path), "-Y", self._marker_filter]
                # The file is still being written: a cut-short last packet is fine here.
                result = subprocess.run(
                    [*read, "-T", "fields", "-e", "udp.payload"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                return marker.hex() in result.stdout.replace(":", "")

            try:
                wait_until(marker_captured, timeout, what="tshark capturing", interval=0.1)
            except TimeoutError as error:
                raise PeerError(f"{error}\n{self.log()}") from None

    @property
    def _marker_filter(self) -> str:
        return f"udp.dstport == {self.marker_port}"

    def _before_stop(self) -> None:
        if self.running():
            self.sync()

    def _read(self, *args: str) -> str:
        if self.running():
            raise PeerError("stop the capture before reading it")
        result = subprocess.run(
            [TSHARK, "-n", "-r", str(self.capture_path), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return result.stdout

    def udp_payloads(
        self, display_filter: str = "sip", *, decode_as: Sequence[str] = ()
    ) -> list[bytes]:
        """The UDP payload bytes of the packets matching `display_filter`, in order.

        `decode_as` entries go to `-d`, e.g. "udp.port==40000,sip" for SIP tshark's
        heuristics miss.
        """
        decode = [arg for spec in decode_as for arg in ("-d", spec)]
        wanted = f"udp && !({self._marker_filter}) && ({display_filter})"
        out = self._read(*decode, "-Y", wanted, "-T", "fields", "-e", "udp.payload")
        return [bytes.fromhex(line.replace(":", "")) for line in out.splitlines() if line]

    def rtp_streams(self, rtp_ports: Sequence[int] = ()) -> list[RtpStream]:
        """`-z rtp,streams` with the RTP-over-UDP heuristic on (a capture of media ports
        alone has no SDP to tell tshark); `rtp_ports` are also decoded as RTP."""
        decode = [arg for port in rtp_ports for arg in ("-d", f"udp.port=={port},rtp")]
        report = self._read(*decode, "--enable-heuristic", "rtp_udp", "-q", "-z", "rtp,streams")
        return _parse_rtp_streams(report)


def _parse_rtp_streams(report: str) -> list[RtpStream]:
    streams = []
    for line in report.splitlines():
        row = _RTP_STREAM_ROW.match(line)
        if row is None:
            continue
        min_delta, mean_delta, max_delta = (float(x) for x in row["deltas"].split())
        min_jitter, mean_jitter, max_jitter = (float(x) for x in row["jitters"].split())
        streams.append(
            RtpStream(
                src=row["src"],
                src_port=int(row["src_port"]),
                dst=row["dst"],
                dst_port=int(row["dst_port"]),
                ssrc=int(row["ssrc"], 16),
                payload=row["payload"],
                packets=int(row["packets"]),
                lost=int(row["lost"]),
                min_delta_ms=min_delta,
                mean_delta_ms=mean_delta,
                max_delta_ms=max_delta,
                min_jitter_ms=min_jitter,
                mean_jitter_ms=mean_jitter,
                max_jitter_ms=max_jitter,
                problems=bool(row["problems"]),
            )
        )
    return streams


def peers_installed() -> list[str]:
    """The peer binaries missing from PATH (empty when all are there)."""
    return [b for b in (SIPP, KAMAILIO, KAMCMD, BARESIP, TSHARK) if shutil.which(b) is None]
