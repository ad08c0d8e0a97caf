"""The API's shape: the envelope, pagination, errors with the right status and code, sessions,
invitations, OpenAPI served, and schemathesis against it (no 500 on any generated input)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from callmeter.server.testing import Harness
from tests.test_server_media import tiny_wav

DEFINITION: dict[str, Any] = {
    "call_duration_s": 5,
    "groups": [
        {"name": "a", "endpoints": 1, "target": {"group": "b"}},
        {"name": "b", "endpoints": 1},
    ],
}


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "api.duckdb")
    try:
        yield harness
    finally:
        harness.close()


def test_lists_are_paginated_in_the_envelope(h: Harness) -> None:
    for i in range(5):
        h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": f"P {i}"})
    response = h.call("GET", f"/organizations/{h.org}/projects?limit=2&offset=1", h.owner)
    body = response.json()
    assert set(body) == {"data", "meta"}
    assert [p["name"] for p in body["data"]] == ["P 1", "P 2"]
    assert body["meta"] == {"page": {"total": 5, "limit": 2, "offset": 1}}


def test_errors_have_one_shape_and_the_right_status(h: Harness) -> None:
    cases = [
        (h.call("GET", "/me"), 401, "unauthenticated"),
        (h.call("GET", "/me", {"Authorization": "Bearer nope"}), 401, "unauthenticated"),
        (h.call("GET", "/projects/prj_missing", h.owner), 404, "not_found"),
        (h.call("GET", "/no/such/route", h.owner), 404, "not_found"),
        (h.call("DELETE", "/me", h.owner), 405, "method_not_allowed"),
        (h.call("POST", f"/organizations/{h.org}/projects", h.owner, json={}),
         422, "unprocessable"),
        (h.call("POST", "/auth/login", json={"email": h.OWNER_EMAIL, "password": "wrong"}),
         401, "unauthenticated"),
    ]  # fmt: skip
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["message"]
    assert cases[0][0].headers["www-authenticate"] == "Bearer"
    assert cases[5][0].json()["error"]["message"] == "name: Field required"


def test_a_bad_test_is_a_400_naming_the_field(h: Harness) -> None:
    project = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "P"})
    bad = {**DEFINITION, "groups": [{"name": "a", "endpoints": 1, "target": {"group": "x"}}]}
    response = h.call("POST", f"/projects/{project['project_id']}/tests", h.owner,
                      json={"name": "t", "definition": bad})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_input",
        "message": 'definition: groups[0].target.group: no group named "x" (known: a)',
    }
    typo = {**DEFINITION, "call_duration": 5}
    response = h.call("POST", f"/projects/{project['project_id']}/tests", h.owner,
                      json={"name": "t", "definition": typo})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(
        'definition: call_duration: unknown field; did you mean "call_duration_s"?'
    )


def test_duplicates_conflict_and_the_slug_never_changes(h: Harness) -> None:
    project = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "Voice QA"})
    assert project["slug"] == "voice-qa"
    again = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "Voice QA"})
    assert again["slug"] == "voice-qa-2"
    pid = project["project_id"]
    renamed = h.ok("PATCH", f"/projects/{pid}", h.owner, json={"name": "Renamed"})
    assert (renamed["name"], renamed["slug"]) == ("Renamed", "voice-qa")
    response = h.call("PATCH", f"/projects/{pid}", h.owner, json={"slug": "other"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("slug: a project's slug never changes")
    body = {"name": "t", "definition": DEFINITION}
    h.ok("POST", f"/projects/{pid}/tests", h.owner, json=body)
    response = h.call("POST", f"/projects/{pid}/tests", h.owner, json=body)
    assert response.status_code == 409
    assert response.json()["error"]["message"] == "name: 't' is already taken in this project"


def test_sip_passwords_are_write_only(h: Harness) -> None:
    pid = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "P"})[
        "project_id"
    ]
    rid = h.ok("POST", f"/projects/{pid}/registrars", h.owner,
               json={"name": "pbx", "domain": "pbx.test"})["registrar_id"]  # fmt: skip
    created = h.ok("POST", f"/registrars/{rid}/accounts", h.owner,
                   json={"username": "1000", "password": "hunter2-secret"})  # fmt: skip
    csv = "username,password\n1001,csv-secret\n1000,changed-secret\n"
    imported = h.ok("POST", f"/registrars/{rid}/accounts/import",
                    {**h.owner, "content-type": "text/csv"}, content=csv)  # fmt: skip
    assert imported == {"imported": 1, "replaced": 1}
    listed = h.call("GET", f"/registrars/{rid}/accounts", h.owner)
    for text in (str(created), listed.text):
        assert "secret" not in text and "password" not in text


def test_csv_import_errors_name_the_line_and_import_nothing(h: Harness) -> None:
    pid = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "P"})[
        "project_id"
    ]
    rid = h.ok("POST", f"/projects/{pid}/registrars", h.owner,
               json={"name": "pbx", "domain": "pbx.test"})["registrar_id"]  # fmt: skip
    csv_headers = {**h.owner, "content-type": "text/csv"}
    cases = {
        "user,pass\n1,2\n": "csv line 1: the header must be username,password[,realm], "
        "got 'user,pass'",
        "username,password\n1000,a\n1001\n": "csv line 3: expected 2 fields, got 1",
        "username,password\n1000,a\n1000,b\n": "csv line 3: username '1000' repeats line 2",
        "username,password\nbad user,a\n": "csv line 2: username: Value error, 'bad user' is "
        "not a SIP user name (RFC 3261 section 25.1)",
    }
    for body, message in cases.items():
        response = h.call("POST", f"/registrars/{rid}/accounts/import", csv_headers, content=body)
        assert response.status_code == 400
        assert response.json()["error"]["message"] == message
    assert h.ok("GET", f"/registrars/{rid}/accounts", h.owner) == []


def test_media_files_store_the_bytes(h: Harness) -> None:
    pid = h.ok("POST", f"/organizations/{h.org}/projects", h.owner, json={"name": "P"})[
        "project_id"
    ]
    data = tiny_wav()  # uploads are decoded and transcoded: a real WAV
    media = h.ok("POST", f"/projects/{pid}/media-files", h.owner,
                 files={"file": ("prompt.wav", data, "audio/wav")})  # fmt: skip
    assert (media["name"], media["size_bytes"], media["content_type"]) == (
        "prompt.wav", len(data), "audio/wav",
    )  # fmt: skip
    content = h.call("GET", f"/media-files/{media['media_file_id']}/content", h.owner)
    assert content.content == data
    body = {
        **DEFINITION,
        "groups": [{**g, "media_file": "prompt.wav"} for g in DEFINITION["groups"]],
    }
    test = h.ok("POST", f"/projects/{pid}/tests", h.owner, json={"name": "m", "definition": body})
    run = h.ok("POST", f"/tests/{test['test_id']}/runs", h.owner)
    h.tick()
    started = h.launcher.started[run["run_id"]]
    path = Path(started.groups[0].media_file or "")
    assert path.read_bytes() == data
    missing = {**DEFINITION, "groups": [{**DEFINITION["groups"][0], "media_file": "nope.wav"}]}
    response = h.call("POST", f"/projects/{pid}/tests", h.owner,
                      json={"name": "n", "definition": missing})  # fmt: skip
    assert response.json()["error"]["message"] == (
        "definition: groups[0].media_file: no media file named 'nope.wav' in this project "
        "(upload it first)"
    )


def test_invitation_by_link_creates_the_user_once(h: Harness) -> None:
    invitation = h.ok("POST", f"/organizations/{h.org}/invitations", h.owner,
                      json={"email": "new@example.com", "role": "Tester"})  # fmt: skip
    assert invitation["link"] == f"http://testserver/invite#{invitation['token']}"
    listed = h.ok("GET", f"/organizations/{h.org}/invitations", h.owner)
    assert "token" not in listed[0]
    wrong = {"token": invitation["token"], "email": "other@example.com", "password": "long enough"}
    assert h.call("POST", "/invitations/accept", json=wrong).status_code == 400
    short = {"token": invitation["token"], "password": "short"}
    response = h.call("POST", "/invitations/accept", json=short)
    assert response.json()["error"]["message"] == "password: at least 8 characters"
    body = {"token": invitation["token"], "password": "long enough"}
    joined = h.ok("POST", "/invitations/accept", json=body)
    assert (joined["organization_id"], joined["role"]) == (h.org, "Tester")
    assert h.call("POST", "/invitations/accept", json=body).status_code == 409
    assert h.call("POST", "/invitations/accept", json={"token": "cmi_x"}).status_code == 404
    headers = h.login("new@example.com", "long enough")
    h.ok("POST", "/auth/logout", headers)
    assert h.call("GET", "/me", headers).status_code == 401


def test_openapi_is_served(h: Harness) -> None:
    schema = h.http.get("/api/v1/openapi.json").json()
    assert schema["info"]["title"] == "callmeter"
    assert "/api/v1/tests/{test_id}/runs" in schema["paths"]
    assert h.http.get("/api/v1/docs").status_code == 200


# schemathesis ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = Harness(tmp_path_factory.mktemp("fuzz") / "fuzz.duckdb")
    o = harness.owner
    pid = harness.ok("POST", f"/organizations/{harness.org}/projects", o, json={"name": "F"})[
        "project_id"
    ]
    harness.ok("POST", f"/projects/{pid}/tests", o, json={"name": "t", "definition": DEFINITION})
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_target: Harness) -> Any:
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_target.app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_generated_request_gets_a_500(case: Any, fuzz_target: Harness) -> None:
    # Keep the Owner's session alive: a fuzzed logout or organization deletion must not
    # turn every later case into a 401/404 that tests nothing.
    if case.path in ("/api/v1/auth/logout", "/api/v1/organizations/{organization_id}"):
        if case.method.upper() in ("POST", "DELETE"):
            return
    case.call_and_validate(headers=fuzz_target.owner, checks=[not_a_server_error])
