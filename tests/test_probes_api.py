"""Probes, webhooks and status pages in the API: every role against every action (Tester and
above trigger, Editor and above edit), another organization and a member without the project
get 404, the plan's probe count is enforced, and bad input names the field."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callmeter.probes.testing import ScriptedExecutor
from callmeter.server.testing import Harness, Headers

ROLES = ("Viewer", "Tester", "Editor", "Admin", "Owner")
RANK = {role: i for i, role in enumerate(ROLES)}


@dataclass
class World:
    h: Harness
    project: str
    probe: str
    execution: str
    webhook: str
    page: str
    members: dict[str, Headers]
    outsider: Headers  # Owner of another organization
    stranger: Headers  # Editor of this organization, limited to another project

    def headers(self, role: str) -> Headers:
        return self.h.owner if role == "Owner" else self.members[role]

    def fill(self, path: str) -> str:
        return path.format(project=self.project, probe=self.probe, execution=self.execution,
                           webhook=self.webhook, page=self.page)  # fmt: skip


def _setup(h: Harness) -> World:
    o = h.owner
    pid = h.ok("POST", f"/organizations/{h.org}/projects", o, json={"name": "Main"})["project_id"]
    other = h.ok("POST", f"/organizations/{h.org}/projects", o, json={"name": "Side"})
    probe = h.ok("POST", f"/projects/{pid}/probes", o, json={"name": "pbx"})["probe_id"]
    h.app.state.probes.run_pending()
    execution = h.ok("GET", f"/probes/{probe}/executions", o)[0]["execution_id"]
    webhook = h.ok("POST", f"/probes/{probe}/webhooks", o,
                   json={"url": "https://hooks.example.com/x"})["webhook_id"]  # fmt: skip
    page = h.ok(
        "POST",
        f"/projects/{pid}/status-pages",
        o,
        json={"name": "Voice", "slug": "voice", "components": [{"probe_id": probe}]},
    )
    members = {role: h.add_member(role)[1] for role in ROLES[:-1]}
    _, outsider = h.new_organization()
    _, stranger = h.add_member("Editor", all_projects=False, projects=[(other["project_id"], None)])
    return World(h, pid, probe, execution, webhook, page["status_page_id"], members, outsider,
                 stranger)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    h = Harness(tmp_path_factory.mktemp("probes-api") / "platform.duckdb")
    h.app.state.probes.executor = ScriptedExecutor()
    try:
        yield _setup(h)
    finally:
        h.app.state.probes.close(timeout_s=10)
        h.close()


# (method, path, body, lowest role allowed); bodies that change state are harmless to repeat.
ACTIONS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/projects/{project}/probes", None, "Viewer"),
    ("GET", "/probes/{probe}", None, "Viewer"),
    ("GET", "/probes/{probe}/executions", None, "Viewer"),
    ("GET", "/probe-executions/{execution}", None, "Viewer"),
    ("POST", "/probes/{probe}/trigger", None, "Tester"),
    ("PATCH", "/probes/{probe}", {"description": "x"}, "Editor"),
    ("GET", "/probes/{probe}/webhooks", None, "Viewer"),
    ("GET", "/webhooks/{webhook}", None, "Viewer"),
    ("GET", "/webhooks/{webhook}/deliveries", None, "Viewer"),
    ("POST", "/probes/{probe}/webhooks", {"url": "https://h.example.com/"}, "Editor"),
    ("PATCH", "/webhooks/{webhook}", {"description": "x"}, "Editor"),
    ("POST", "/webhooks/{webhook}/rotate-secret", None, "Editor"),
    ("POST", "/webhooks/{webhook}/test", None, "Editor"),
    ("GET", "/projects/{project}/status-pages", None, "Viewer"),
    ("GET", "/status-pages/{page}", None, "Viewer"),
    ("PATCH", "/status-pages/{page}", {"description": "x"}, "Editor"),
]


@pytest.mark.parametrize("role", ROLES)
def test_every_role_against_every_action(world: World, role: str) -> None:
    for method, path, body, lowest in ACTIONS:
        response = world.h.call(method, world.fill(path), world.headers(role), json=body)
        allowed = RANK[role] >= RANK[lowest]
        expected = (200, 201, 202) if allowed else (403,)
        assert response.status_code in expected, (role, method, path, response.text)
        if not allowed:
            assert response.json()["error"]["code"] == "forbidden"
            assert f"needs the {lowest} role; you are {role}" in response.json()["error"]["message"]


def test_creating_and_deleting_need_editor(world: World) -> None:
    h = world.h
    body = {"name": "rbac-new"}
    for role in ("Viewer", "Tester"):
        response = h.call("POST", f"/projects/{world.project}/probes", world.headers(role),
                          json=body)  # fmt: skip
        assert response.status_code == 403, role
    created = h.ok("POST", f"/projects/{world.project}/probes", world.headers("Editor"), json=body)
    for role in ("Viewer", "Tester"):
        assert h.call("DELETE", f"/probes/{created['probe_id']}",
                      world.headers(role)).status_code == 403  # fmt: skip
    assert h.call("DELETE", f"/probes/{created['probe_id']}",
                  world.headers("Editor")).status_code == 204  # fmt: skip


@pytest.mark.parametrize("who", ["outsider", "stranger"])
def test_what_cannot_be_seen_is_404(world: World, who: str) -> None:
    headers = world.outsider if who == "outsider" else world.stranger
    for method, path, body, _ in ACTIONS:
        response = world.h.call(method, world.fill(path), headers, json=body)
        assert response.status_code == 404, (who, method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    for method, path in (("DELETE", "/probes/{probe}"), ("DELETE", "/webhooks/{webhook}"),
                         ("DELETE", "/status-pages/{page}")):  # fmt: skip
        assert world.h.call(method, world.fill(path), headers).status_code == 404
    # and a made-up id reads the same as a hidden one
    hidden = world.h.call("GET", world.fill("/probes/{probe}"), headers).json()
    made_up = world.h.call("GET", "/probes/prb_0000000000000000", headers).json()
    assert hidden["error"]["message"].replace(world.probe, "X") == made_up["error"][
        "message"
    ].replace("prb_0000000000000000", "X")


def test_a_status_page_takes_only_the_projects_own_probes(world: World) -> None:
    h = world.h
    side = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "Elsewhere"})
    response = h.call("POST", f"/projects/{side['project_id']}/status-pages", h.owner,
                      json={"name": "x", "slug": "elsewhere",
                            "components": [{"probe_id": world.probe}]})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        f"components[0].probe_id: no probe {world.probe!r} in this project"
    )
    taken = h.call("POST", f"/projects/{world.project}/status-pages", h.owner,
                   json={"name": "x", "slug": "voice"})  # fmt: skip
    assert taken.status_code == 409
    assert taken.json()["error"]["message"] == (
        "slug: 'voice' is already taken by another status page"
    )


def test_the_plan_limits_the_number_of_probes(tmp_path: Path) -> None:
    h = Harness(tmp_path / "plan.duckdb")
    try:
        h.ok("PATCH", f"/organizations/{h.org}/plan", h.owner, json={"probe_count": 2})
        pid = h.ok("POST", f"/organizations/{h.org}/projects", h.owner,
                   json={"name": "Main"})["project_id"]  # fmt: skip
        other = h.ok("POST", f"/organizations/{h.org}/projects", h.owner,
                     json={"name": "Other"})["project_id"]  # fmt: skip
        h.ok("POST", f"/projects/{pid}/probes", h.owner, json={"name": "a"})
        h.ok("POST", f"/projects/{other}/probes", h.owner, json={"name": "b"})  # org-wide
        refused = h.call("POST", f"/projects/{pid}/probes", h.owner, json={"name": "c"})
        assert refused.status_code == 409
        assert refused.json()["error"] == {
            "code": "plan_limit",
            "message": "probes: the organization has 2 of the 2 probes plan self-hosted "
            "allows; delete one or change the plan",
        }
        h.ok("PATCH", f"/organizations/{h.org}/plan", h.owner, json={"max_test_duration_s": 20})
        h.ok("PATCH", f"/organizations/{h.org}/plan", h.owner, json={"probe_count": 3})
        long_call = h.call("POST", f"/projects/{pid}/probes", h.owner,
                           json={"name": "c", "call_duration_s": 30})  # fmt: skip
        assert long_call.status_code == 409
        assert long_call.json()["error"]["message"] == (
            "call_duration_s: 30 s; plan self-hosted allows 20 s"
        )
    finally:
        h.app.state.probes.close(timeout_s=5)
        h.close()


def test_bad_input_names_the_field(world: World) -> None:
    h, pid = world.h, world.project

    def problem(body: dict[str, Any], status: int = 422) -> str:
        response = h.call("POST", f"/projects/{pid}/probes", h.owner, json=body)
        assert response.status_code == status, response.text
        message: str = response.json()["error"]["message"]
        return message

    assert problem({"name": "x", "interval_min": 10}) == (
        "interval_min: Input should be 5, 15, 30 or 60"
    )
    assert problem({"name": "x", "thresholds": {"mos": {"warning": 3, "critical": 4}}}) == (
        "body: thresholds.mos: lower MOS is worse, so warning (3) must be at or above critical (4)"
    )
    assert problem({"name": "x", "registrar": "nope", "account": "1000",
                    "target": {"kind": "uri", "uri": "sip:echo@pbx.test"}},
                   400) == 'registrar: no registrar named "nope" (known: builtin)'  # fmt: skip
    assert problem({"name": "pbx"}, 409) == (
        "name: 'pbx' is already taken by another probe of this project"
    )
    webhook = h.call("POST", f"/probes/{world.probe}/webhooks", h.owner,
                     json={"url": "http://hooks.example.com/x"})  # fmt: skip
    assert webhook.status_code == 400
    assert webhook.json()["error"]["message"] == (
        "url: webhooks need https:// (plain http only to loopback addresses), got "
        "'http://hooks.example.com/x'"
    )
    patch = h.call("PATCH", f"/probes/{world.probe}", h.owner, json={"account": "1000"})
    assert patch.status_code == 400
    assert patch.json()["error"]["message"] == (
        "account: the built-in registrar makes its own accounts"
    )


def test_a_webhook_secret_is_shown_once(world: World) -> None:
    h = world.h
    created = h.ok("POST", f"/probes/{world.probe}/webhooks", h.owner,
                   json={"url": "http://127.0.0.1:9/hook", "description": "local"})  # fmt: skip
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created["secret_hint"] == f"…{secret[-4:]}"
    for path in (f"/webhooks/{created['webhook_id']}", f"/probes/{world.probe}/webhooks"):
        text = h.call("GET", path, h.owner).text
        assert secret not in text and "secret" in text  # only the hint
    rotated = h.ok("POST", f"/webhooks/{created['webhook_id']}/rotate-secret", h.owner)
    assert rotated["secret"] != secret and rotated["secret"].startswith("whsec_")
    h.ok("DELETE", f"/webhooks/{created['webhook_id']}", h.owner)


def test_the_python_client_covers_probes(world: World) -> None:
    from callmeter.client import ApiError, Client

    h = world.h
    token = h.owner["Authorization"].removeprefix("Bearer ")
    client = Client("http://testserver", token, http=h.http)
    probe = client.create_probe(world.project, "via-client", interval_min=15,
                                thresholds={"mos": {"warning": 4.1, "critical": 3.5}})  # fmt: skip
    assert probe.interval_min == 15 and probe.health == "UNKNOWN"
    assert probe.probe_id in {p.probe_id for p in client.probes(world.project)}
    assert client.update_probe(probe.probe_id, enabled=False).next_run_at is None
    execution = client.trigger_probe(probe.probe_id)
    h.app.state.probes.run_pending()
    done = client.probe_execution(execution.execution_id)
    assert (done.status, done.health) == ("DONE", "HEALTHY")
    assert [e.execution_id for e in client.probe_executions(probe.probe_id, limit=5)] == [
        execution.execution_id
    ]
    assert client.probe_executions(probe.probe_id, health="UNHEALTHY") == []
    hook = client.create_webhook(probe.probe_id, "https://hooks.example.com/a")
    assert hook.secret.startswith("whsec_")
    assert client.update_webhook(hook.webhook_id, enabled=False).enabled is False
    assert client.send_test_webhook(hook.webhook_id).event == "webhook.test"
    assert [d.status for d in client.webhook_deliveries(hook.webhook_id)] == ["PENDING"]
    assert client.rotate_webhook_secret(hook.webhook_id).secret != hook.secret
    assert [w.webhook_id for w in client.webhooks(probe.probe_id)] == [hook.webhook_id]
    page = client.create_status_page(world.project, "Client page", "client-page",
                                     components=[{"probe_id": probe.probe_id}])  # fmt: skip
    assert page.url == "http://testserver/status/client-page"
    assert page.components[0].display_name == "via-client"
    page = client.update_status_page(page.status_page_id, components=[])
    assert page.components == []
    client.delete_status_page(page.status_page_id)
    client.delete_webhook(hook.webhook_id)
    client.delete_probe(probe.probe_id)
    with pytest.raises(ApiError) as caught:
        client.probe(probe.probe_id)
    assert caught.value.status == 404
