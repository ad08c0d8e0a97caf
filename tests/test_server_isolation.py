"""Organizations never see each other: for every resource type, another organization's Owner
gets 404 (never 403) on read, list, change and delete, and nothing changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callmeter.server.testing import Harness, Headers, StaticWorkers
from callmeter.server.workers import WorkerInfo, WorkerStatus
from tests.test_server_media import tiny_wav

DEFINITION: dict[str, Any] = {
    "call_duration_s": 5,
    "groups": [
        {"name": "a", "endpoints": 1, "target": {"group": "b"}},
        {"name": "b", "endpoints": 1},
    ],
}
WAV = tiny_wav()  # uploads are decoded and transcoded: a real WAV


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Harness, dict[str, str], Headers]]:
    h = Harness(tmp_path_factory.mktemp("iso") / "iso.duckdb")
    o = h.owner
    ids: dict[str, str] = {"org": h.org}
    ids["project"] = h.ok("POST", f"/organizations/{h.org}/projects", o, json={"name": "A"})[
        "project_id"
    ]
    p = ids["project"]
    ids["registrar"] = h.ok(
        "POST", f"/projects/{p}/registrars", o, json={"name": "pbx", "domain": "a.test"}
    )["registrar_id"]
    ids["account"] = h.ok(
        "POST",
        f"/registrars/{ids['registrar']}/accounts",
        o,
        json={"username": "1000", "password": "secret"},
    )["sip_account_id"]
    ids["media"] = h.ok("POST", f"/projects/{p}/media-files", o, files={"file": ("a.wav", WAV)})[
        "media_file_id"
    ]
    ids["test"] = h.ok(
        "POST", f"/projects/{p}/tests", o, json={"name": "t", "definition": DEFINITION}
    )["test_id"]
    ids["run"] = h.ok("POST", f"/tests/{ids['test']}/runs", o)["run_id"]
    ids["member"] = h.add_member("Viewer")[0]
    ids["key"] = h.ok("POST", f"/organizations/{h.org}/api-keys", o, json={"name": "k"})[
        "api_key_id"
    ]
    ids["invitation"] = h.ok(
        "POST", f"/organizations/{h.org}/invitations", o, json={"role": "Viewer"}
    )["invitation_id"]
    _, intruder = h.new_organization("B")
    try:
        yield h, ids, intruder
    finally:
        h.close()  # fmt: skip


# (method, path template, json body or None); every one must answer 404 to the intruder.
ATTEMPTS: dict[str, list[tuple[str, str, Any]]] = {
    "organization": [
        ("GET", "/organizations/{org}", None),
        ("PATCH", "/organizations/{org}", {"name": "x"}),
        ("DELETE", "/organizations/{org}", None),
    ],
    "plan": [
        ("GET", "/organizations/{org}/plan", None),
        ("PATCH", "/organizations/{org}/plan", {"concurrent_runs": 0}),
    ],
    "member": [
        ("GET", "/organizations/{org}/members", None),
        ("PATCH", "/organizations/{org}/members/{member}", {"role": "Admin"}),
        ("DELETE", "/organizations/{org}/members/{member}", None),
    ],
    "invitation": [
        ("GET", "/organizations/{org}/invitations", None),
        ("POST", "/organizations/{org}/invitations", {"role": "Viewer"}),
        ("DELETE", "/organizations/{org}/invitations/{invitation}", None),
    ],
    "API key": [
        ("GET", "/organizations/{org}/api-keys", None),
        ("POST", "/organizations/{org}/api-keys", {"name": "x"}),
        ("DELETE", "/organizations/{org}/api-keys/{key}", None),
    ],
    "worker": [("GET", "/organizations/{org}/workers", None)],
    "project": [
        ("GET", "/organizations/{org}/projects", None),
        ("POST", "/organizations/{org}/projects", {"name": "x"}),
        ("GET", "/projects/{project}", None),
        ("PATCH", "/projects/{project}", {"name": "x"}),
        ("DELETE", "/projects/{project}", None),
    ],
    "registrar": [
        ("GET", "/projects/{project}/registrars", None),
        ("POST", "/projects/{project}/registrars", {"name": "x", "domain": "x.test"}),
        ("GET", "/registrars/{registrar}", None),
        ("PATCH", "/registrars/{registrar}", {"port": 5070}),
        ("DELETE", "/registrars/{registrar}", None),
    ],
    "SIP account": [
        ("GET", "/registrars/{registrar}/accounts", None),
        ("POST", "/registrars/{registrar}/accounts", {"username": "9", "password": "x"}),
        ("PATCH", "/sip-accounts/{account}", {"password": "x"}),
        ("DELETE", "/sip-accounts/{account}", None),
    ],
    "media file": [
        ("GET", "/projects/{project}/media-files", None),
        ("GET", "/media-files/{media}", None),
        ("GET", "/media-files/{media}/content", None),
        ("DELETE", "/media-files/{media}", None),
    ],
    "test": [
        ("GET", "/projects/{project}/tests", None),
        ("POST", "/projects/{project}/tests", {"name": "x", "definition": DEFINITION}),
        ("GET", "/tests/{test}", None),
        ("PATCH", "/tests/{test}", {"description": "x"}),
        ("DELETE", "/tests/{test}", None),
        ("POST", "/tests/{test}/runs", None),
    ],
    "run": [
        ("GET", "/projects/{project}/runs", None),
        ("GET", "/runs/{run}", None),
        ("POST", "/runs/{run}/stop", None),
        ("GET", "/runs/{run}/overview", None),
        ("GET", "/runs/{run}/export", None),
    ],
}


@pytest.mark.parametrize("kind", list(ATTEMPTS))
def test_another_organization_gets_404(
    setup: tuple[Harness, dict[str, str], Headers], kind: str
) -> None:
    h, ids, intruder = setup
    for method, template, body in ATTEMPTS[kind]:
        path = template.format(**ids)
        response = h.call(method, path, intruder, json=body)
        assert response.status_code == 404, (method, path, response.status_code, response.text)
        assert response.json()["error"]["code"] == "not_found"
        assert "forbidden" not in response.text


def test_nothing_changed_for_the_owner(setup: tuple[Harness, dict[str, str], Headers]) -> None:
    h, ids, intruder = setup
    for kind, attempts in ATTEMPTS.items():
        for method, template, body in attempts:
            h.call(method, template.format(**ids), intruder, json=body)
        del kind
    o = h.owner
    assert h.ok("GET", f"/organizations/{h.org}", o)["name"] == "Default"
    assert h.ok("GET", f"/projects/{ids['project']}", o)["name"] == "A"
    assert h.ok("GET", f"/registrars/{ids['registrar']}", o)["port"] is None
    assert h.ok("GET", f"/tests/{ids['test']}", o)["description"] == ""
    assert h.ok("GET", f"/runs/{ids['run']}", o)["status"] == "QUEUED"
    assert len(h.ok("GET", f"/registrars/{ids['registrar']}/accounts", o)) == 1
    assert h.ok("GET", f"/organizations/{h.org}/plan", o)["concurrent_runs"] > 0
    members = h.ok("GET", f"/organizations/{h.org}/members", o)
    assert {m["role"] for m in members} == {"Owner", "Viewer"}
    assert len(h.ok("GET", f"/organizations/{h.org}/invitations", o)) == 2


def test_lists_show_only_ones_own(setup: tuple[Harness, dict[str, str], Headers]) -> None:
    h, ids, intruder = setup
    orgs = h.ok("GET", "/organizations", intruder)
    assert ids["org"] not in {o["organization_id"] for o in orgs}


def test_on_premise_workers_are_seen_by_their_organization_only(tmp_path: Path) -> None:
    workers = StaticWorkers()
    h = Harness(tmp_path / "w.duckdb", workers=workers)
    try:
        other, other_owner = h.new_organization("B")
        now = h.clock.now
        workers.set([
            WorkerInfo("cloud-1", "eu", 100, 0, WorkerStatus.ONLINE, now),
            WorkerInfo("a-onprem", "office", 50, 0, WorkerStatus.ONLINE, now, h.org),
            WorkerInfo("b-onprem", "lab", 50, 0, WorkerStatus.ONLINE, now, other),
        ])  # fmt: skip
        mine = h.ok("GET", f"/organizations/{h.org}/workers", h.owner)
        theirs = h.ok("GET", f"/organizations/{other}/workers", other_owner)
        assert [w["name"] for w in mine] == ["cloud-1", "a-onprem"]
        assert [w["name"] for w in theirs] == ["cloud-1", "b-onprem"]
    finally:
        h.close()
