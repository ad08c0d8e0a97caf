"""Testing a registration from the platform: the server registers a project account with the
registrar for real and reports the answer and the ladder. The registrar is the built-in one,
running in this process on 127.0.0.1 (a ``LoopThread``), so the REGISTER, the digest challenge
and the answers are real datagrams."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callmeter.client import Client
from callmeter.registrar import Account, RegistrarConfig, RunningRegistrar
from callmeter.server.registration_check import RegistrationTarget, run_check
from callmeter.server.testing import Harness, Headers
from callmeter.transport.thread import LoopThread

DOMAIN = "example.test"


@pytest.fixture(scope="module")
def registrar() -> Iterator[RunningRegistrar]:
    loop = LoopThread(name="registrar-under-test")
    running = RunningRegistrar(
        accounts=[Account("alice", "s3cret", DOMAIN), Account("bob", "right", DOMAIN)],
        config=RegistrarConfig(domain=DOMAIN),
    )
    loop.call(running.start(), timeout=10)
    try:
        yield running
    finally:
        loop.close(running.close)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "registration.duckdb")
    try:
        yield harness
    finally:
        harness.close()


class Project:
    """A project whose registrar is the one under test (domain example.test, reached through
    an outbound proxy at its address), with alice's right password and bob's wrong one."""

    def __init__(self, h: Harness, registrar: RunningRegistrar) -> None:
        host, port = registrar.address
        self.project_id = h.ok(
            "POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "P"}
        )["project_id"]
        self.registrar_id = h.ok(
            "POST",
            f"/projects/{self.project_id}/registrars",
            h.owner,
            json={"name": "pbx", "domain": DOMAIN, "outbound_proxy": f"{host}:{port}"},
        )["registrar_id"]
        csv = "username,password\nalice,s3cret\nbob,wrong\n"
        h.ok("POST", f"/registrars/{self.registrar_id}/accounts/import",
             {**h.owner, "content-type": "text/csv"}, content=csv.encode())  # fmt: skip
        self.path = f"/registrars/{self.registrar_id}/test-registration"


@pytest.fixture
def project(h: Harness, registrar: RunningRegistrar) -> Project:
    return Project(h, registrar)


def check(h: Harness, project: Project, username: str, who: Headers | None = None) -> Any:
    return h.call("POST", project.path, who or h.owner, json={"username": username})


def ladder(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(line["direction"], line["line"]) for line in result["trace"]]


def test_the_right_password_registers_and_unregisters(
    h: Harness, project: Project, registrar: RunningRegistrar
) -> None:
    response = check(h, project, "alice")
    assert response.status_code == 200, response.text
    result = response.json()["data"]
    assert (result["ok"], result["status"], result["reason"]) == (True, 200, "OK")
    assert 0 < result["elapsed_ms"] < 10_000
    register = ("out", f"REGISTER sip:{DOMAIN} SIP/2.0")
    assert ladder(result)[:4] == [
        register, ("in", "SIP/2.0 401 Unauthorized"), register, ("in", "SIP/2.0 200 OK"),
    ]  # fmt: skip
    assert ladder(result)[-1] == ("in", "SIP/2.0 200 OK")  # the unregister's answer
    host, port = registrar.address
    assert {line["peer"] for line in result["trace"]} == {f"{host}:{port}"}
    assert [line["at_ms"] for line in result["trace"]] == sorted(
        line["at_ms"] for line in result["trace"]
    )
    assert registrar.registrar.location.lookup(f"sip:alice@{DOMAIN}", 0.0) == []
    assert "Authorization" not in response.text and "s3cret" not in response.text


def test_a_wrong_password_fails_with_the_registrars_answer(h: Harness, project: Project) -> None:
    result = h.ok("POST", project.path, h.owner, json={"username": "bob"})
    assert result["ok"] is False
    assert result["status"] in (401, 403)
    assert result["reason"] == {401: "Unauthorized", 403: "Forbidden"}[result["status"]]
    assert ladder(result)[-1] == ("in", f"SIP/2.0 {result['status']} {result['reason']}")
    assert result["elapsed_ms"] is not None


def test_errors_name_what_to_change(h: Harness, project: Project) -> None:
    response = check(h, project, "carol")
    assert (response.status_code, response.json()["error"]["message"]) == (
        400, "username: registrar 'pbx' has no account 'carol'",
    )  # fmt: skip
    response = h.call("POST", "/registrars/builtin/test-registration", h.owner,
                      json={"username": "alice"})  # fmt: skip
    assert (response.status_code, response.json()["error"]["message"]) == (
        400, "the built-in registrar needs no test",
    )  # fmt: skip
    tls = h.ok("POST", f"/projects/{project.project_id}/registrars", h.owner,
               json={"name": "tls", "domain": DOMAIN, "transport": "TLS"})  # fmt: skip
    h.ok("POST", f"/registrars/{tls['registrar_id']}/accounts", h.owner,
         json={"username": "alice", "password": "x"})  # fmt: skip
    response = h.call("POST", f"/registrars/{tls['registrar_id']}/test-registration", h.owner,
                      json={"username": "alice"})  # fmt: skip
    assert (response.status_code, response.json()["error"]["message"]) == (
        400, "registrar transport: transport tls is not supported yet; use udp or tcp",
    )  # fmt: skip
    assert check(h, project, "").status_code == 422


@pytest.mark.parametrize(("role", "status"), [("Viewer", 403), ("Tester", 200), ("Editor", 200)])
def test_testers_and_above_may_test(h: Harness, project: Project, role: str, status: int) -> None:
    _, headers = h.add_member(role)
    response = check(h, project, "alice", headers)
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"]["message"] == (
            "run test needs the Tester role; you are Viewer"
        )


def test_another_organization_gets_404(h: Harness, project: Project) -> None:
    _, stranger = h.new_organization()
    response = check(h, project, "alice", stranger)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"no registrar {project.registrar_id!r}"


def test_the_client_tests_a_registration(h: Harness, project: Project) -> None:
    token = h.owner["Authorization"].removeprefix("Bearer ")
    client = Client("http://testserver", token, http=h.http)
    result = client.test_registration(project.registrar_id, "alice")
    assert (result.ok, result.status) == (True, 200)
    assert result.trace[0].direction == "out" and result.trace[0].line.startswith("REGISTER")
    assert client.test_registration(project.registrar_id, "bob").ok is False


def test_silence_is_a_timeout_not_an_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        result = run_check(
            RegistrationTarget(DOMAIN, "127.0.0.1", port, "udp"), "alice", "x", timeout_s=0.3
        )
        assert silent.recv(65536).startswith(f"REGISTER sip:{DOMAIN} SIP/2.0".encode())
    assert (result.ok, result.status, result.elapsed_ms) == (False, None, None)
    assert result.reason == f"no answer from udp:127.0.0.1:{port} within 0.3 s"
    assert result.trace[0].line == f"REGISTER sip:{DOMAIN} SIP/2.0"


def test_a_name_that_does_not_resolve_is_reported() -> None:
    target = RegistrationTarget(DOMAIN, "no-such-host.invalid", 5060, "udp")
    result = run_check(target, "alice", "x", timeout_s=0.3)
    assert (result.ok, result.status, result.trace) == (False, None, [])
    assert result.reason.startswith("cannot reach udp:no-such-host.invalid:5060: ")


def test_tcp_registrars_are_checked_over_tcp() -> None:
    loop = LoopThread(name="tcp-registrar")
    running = RunningRegistrar(
        transport="tcp", accounts=[Account("alice", "s3cret", DOMAIN)],
        config=RegistrarConfig(domain=DOMAIN),
    )  # fmt: skip
    loop.call(running.start(), timeout=10)
    try:
        host, port = running.address
        result = run_check(RegistrationTarget(DOMAIN, host, port, "tcp"), "alice", "s3cret")
    finally:
        loop.close(running.close)
    assert (result.ok, result.status) == (True, 200)
    assert [line.line for line in result.trace][:4] == [
        f"REGISTER sip:{DOMAIN} SIP/2.0", "SIP/2.0 401 Unauthorized",
        f"REGISTER sip:{DOMAIN} SIP/2.0", "SIP/2.0 200 OK",
    ]  # fmt: skip
