"""Test files: field and cross-field validation with the exact messages, YAML and CSV loading,
the shipped examples and the JSON Schema."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from callmeter import models
from callmeter.media import source
from callmeter.media.impairment import ImpairmentProfile
from callmeter.models import Registrar, SipAccount, TestFileError, load_test, parse_test

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def accounts(*users: str) -> list[dict[str, str]]:
    return [{"username": user, "password": f"pw-{user}"} for user in users]


def two_groups(**test: Any) -> dict[str, Any]:
    """callers -> callees on the built-in registrar, with ``test`` fields on top."""
    data: dict[str, Any] = {
        "name": "t",
        "groups": [
            {"name": "callers", "endpoints": 2, "target": {"group": "callees"}},
            {"name": "callees", "endpoints": 2},
        ],
    }
    data.update(test)
    return data


def kamailio(*users: str, **registrar: Any) -> dict[str, Any]:
    return {"domain": "127.0.0.1", "accounts": accounts(*users), **registrar}


def errors(data: Any, *, base_dir: Path | None = None) -> list[str]:
    """The lines of the TestFileError that parsing ``data`` raises."""
    with pytest.raises(TestFileError) as info:
        parse_test(data, source="t.yaml", base_dir=base_dir)
    return str(info.value).splitlines()


# -- a valid test ---------------------------------------------------------------------------
def test_defaults_of_a_minimal_test() -> None:
    test = parse_test({"name": "t", "groups": [{"name": "g", "endpoints": 3}]})
    assert test.call_duration_s == 10.0
    assert test.buildup_s == 0.0
    assert list(test.registrars) == ["builtin"]
    assert test.registrars["builtin"].builtin is True
    assert test.registrars["builtin"].transport == "udp"
    group = test.groups[0]
    assert (group.registrar, group.codecs, group.ptime_ms) == ("builtin", ["PCMU", "PCMA"], 20)
    assert group.target is None and group.placement is None and group.impairment is None
    assert test.success.min_success_rate == 0.99
    assert test.success.min_mos is None
    assert test.role(group) == "receiver"


def test_builtin_is_available_when_other_registrars_are_listed() -> None:
    data = two_groups(registrars={"kamailio": kamailio("a")})
    test = parse_test(data)
    assert sorted(test.registrars) == ["builtin", "kamailio"]
    assert test.registrars["kamailio"].host == "127.0.0.1"  # defaults to the domain
    assert test.registrars["kamailio"].port == 5060


def test_codecs_are_case_insensitive_and_keep_the_canonical_name() -> None:
    data = {"name": "t", "groups": [{"name": "g", "endpoints": 1, "codecs": ["opus", "pcma"]}]}
    assert parse_test(data).groups[0].codecs == ["opus", "PCMA"]
    data["groups"][0]["codecs"] = ["OPUS", "g722"]
    assert parse_test(data).groups[0].codecs == ["opus", "G722"]


def test_roles() -> None:
    data = two_groups()
    data["groups"].append({"name": "out", "endpoints": 1, "target": {"uri": "sip:+1555@pstn"}})
    data["groups"].append({"name": "in", "endpoints": 1, "target": {"receive": "external"}})
    test = parse_test(data)
    assert [test.role(g) for g in test.groups] == ["caller", "callee", "caller", "receiver"]


def test_a_validated_test_dumps_and_validates_again(tmp_path: Path) -> None:
    (tmp_path / "hello.wav").write_bytes(b"RIFF")
    (tmp_path / "acc.csv").write_text("username,password\nx,1\ny,2\n")
    data = two_groups(registrars={"k": {"domain": "example.com", "accounts_file": "acc.csv"}})
    data["groups"][0]["media_file"] = "hello.wav"
    data["groups"][0]["registrar"] = "k"
    test = parse_test(data, base_dir=tmp_path)
    assert test.groups[0].media_file == str(tmp_path / "hello.wav")  # stored absolute
    again = parse_test(json.loads(test.model_dump_json()))  # no base_dir needed any more
    assert again == test
    assert [a.username for a in again.registrars["k"].all_accounts] == ["x", "y"]
    assert pickle.loads(pickle.dumps(test)) == test


def test_the_password_stays_out_of_repr() -> None:
    account = SipAccount(username="alice", password="s3cret")
    assert "s3cret" not in repr(account)
    assert "alice" in repr(account)


def test_impairment_profile_and_direction() -> None:
    data = two_groups()
    data["groups"][1]["impairment"] = {"loss_percent": 5, "jitter_ms": 20, "delay_ms": 40}
    impairment = parse_test(data).groups[1].impairment
    assert impairment is not None
    assert impairment.direction == "receive"
    assert impairment.seed == 0
    assert impairment.profile() == ImpairmentProfile(loss_percent=5, delay_ms=40, jitter_ms=20)


def test_our_ptime_limits_mirror_the_media_source() -> None:
    assert (models.MIN_PTIME_MS, models.MAX_PTIME_MS) == (source.MIN_PTIME_MS, source.MAX_PTIME_MS)
    assert models.ENCODER_FRAME_MS == source.ENCODER_FRAME_MS


# -- field errors mapped to paths -----------------------------------------------------------
def test_field_errors_name_the_path() -> None:
    data = two_groups()
    data["groups"][0]["endpoints"] = 0
    data["groups"][1]["codecs"] = ["PCMU", "G729"]
    assert errors(data) == [
        "t.yaml: groups[0].endpoints: Input should be greater than or equal to 1, got 0",
        "t.yaml: groups[1].codecs[1]: unknown audio codec 'G729'; known: PCMU, PCMA, G722, opus",
    ]


def test_a_typo_in_a_field_name_suggests_the_right_one() -> None:
    data = two_groups()
    data["groups"][0]["codec"] = ["PCMU"]
    assert errors(data) == [
        't.yaml: groups[0].codec: unknown field; did you mean "codecs"? (fields: name, '
        "endpoints, registrar, accounts, codecs, ptime_ms, ring_s, media_file, placement, target, "
        "impairment, media_port)"
    ]
    assert errors(two_groups(buildup=3)) == [
        't.yaml: buildup: unknown field; did you mean "buildup_s"? (fields: name, description, '
        "endpoints, call_duration_s, buildup_s, registrars, groups, success)"
    ]


def test_missing_fields_and_wrong_types() -> None:
    assert errors({"groups": [{"endpoints": "ten"}]}) == [
        "t.yaml: name: required",
        "t.yaml: groups[0].name: required",
        "t.yaml: groups[0].endpoints: Input should be a valid integer, unable to parse string "
        "as an integer, got 'ten'",
    ]
    assert errors({"name": "t", "groups": []}) == [
        "t.yaml: groups: List should have at least 1 item after validation, not 0"
    ]
    assert errors(["name", "t"]) == [
        "t.yaml: a test is a mapping of fields (name, groups...), got a list"
    ]


def test_numbers_where_yaml_users_mean_text(tmp_path: Path) -> None:
    data = two_groups(
        registrars={"k": {"domain": "pbx", "accounts": [{"username": 1001, "password": "x"}]}}
    )
    data["groups"][1].update(registrar="k", accounts=[34])
    assert errors(data) == [
        "t.yaml: registrars.k.accounts[0].username: got the number 1001: write it in quotes "
        '("1001"); YAML reads unquoted digits as a number (0042 becomes 34)',
        't.yaml: groups[1].accounts[0]: got the number 34: write it in quotes ("34"); YAML '
        "reads unquoted digits as a number (0042 becomes 34)",
    ]


def test_ranges() -> None:
    data = two_groups(call_duration_s=0, buildup_s=-1, success={"min_mos": 5.5})
    assert errors(data) == [
        "t.yaml: call_duration_s: Input should be greater than 0, got 0",
        "t.yaml: buildup_s: Input should be greater than or equal to 0, got -1",
        "t.yaml: success.min_mos: Input should be less than or equal to 5, got 5.5",
    ]


def test_group_names() -> None:
    data = two_groups()
    data["groups"][1]["name"] = "call ees"
    assert errors(data) == [
        "t.yaml: groups[1].name: invalid name 'call ees': use 1 to 64 letters, digits, '_' or '-'"
    ]


def test_transport() -> None:
    data = two_groups(registrars={"k": kamailio(transport="TLS")})
    assert errors(data) == [
        "t.yaml: registrars.k.transport: transport tls is not supported yet; use udp or tcp"
    ]
    data = two_groups(registrars={"k": kamailio(transport="sctp")})
    assert errors(data) == [
        "t.yaml: registrars.k.transport: Input should be 'udp' or 'tcp', got 'sctp'"
    ]
    data = two_groups(registrars={"k": kamailio("a", "b", "c", "d", transport="TCP")})
    assert parse_test(data).registrars["k"].transport == "tcp"


def test_registrar_fields() -> None:
    data = two_groups(
        registrars={
            "a": {"accounts": []},
            "b": {"domain": "sip:example.com"},
            "c": {"domain": "example.com:99999"},
            "d": {"domain": "example.com", "outbound_proxy": "proxy:http"},
            "e": {"builtin": True, "port": 5070},
        }
    )
    assert errors(data) == [
        "t.yaml: registrars.a.domain: an external registrar needs a domain (or builtin: true)",
        "t.yaml: registrars.b.domain: give a host name or address without a scheme, "
        "got 'sip:example.com'",
        "t.yaml: registrars.c.domain: port 99999 is outside 1..65535 in 'example.com:99999'",
        "t.yaml: registrars.d.outbound_proxy: expected host:port, got 'proxy:http'",
        "t.yaml: registrars.e.port: the built-in registrar takes only transport (its address "
        "and accounts are set at run time); remove this field",
    ]


def test_a_domain_with_a_port_is_where_requests_go_unless_told() -> None:
    registrar = Registrar(domain="127.0.0.1:5070")  # AORs like sip:1001@127.0.0.1:5070
    assert (registrar.domain, registrar.host, registrar.port) == ("127.0.0.1:5070", "127.0.0.1",
                                                                  5070)  # fmt: skip
    registrar = Registrar(domain="pbx.example.com:5070", host="10.0.0.9", port=5080)
    assert (registrar.host, registrar.port) == ("10.0.0.9", 5080)


def test_outbound_proxy_address() -> None:
    registrar = Registrar(domain="example.com", outbound_proxy="10.0.0.1:5070")
    assert registrar.outbound_proxy_address() == ("10.0.0.1", 5070)
    assert Registrar(domain="x.org", outbound_proxy="[::1]:5062").outbound_proxy_address() == (
        "[::1]",
        5062,
    )
    assert Registrar(domain="x.org", outbound_proxy="sbc.x.org").outbound_proxy_address() == (
        "sbc.x.org",
        5060,
    )
    assert Registrar(domain="x.org").outbound_proxy_address() is None


def test_target_placement_and_impairment_errors() -> None:
    data = two_groups()
    data["groups"][0]["target"] = {"group": "callees", "uri": "sip:a@b"}
    data["groups"][1]["target"] = {"uri": "tel:+15551234"}
    data["groups"].append({"name": "x", "endpoints": 1, "placement": {}})
    data["groups"].append({"name": "y", "endpoints": 1, "target": {}})
    data["groups"].append(
        {"name": "z", "endpoints": 1, "impairment": {"loss_percent": 5, "gilbert_p": 0.1}}
    )
    assert errors(data) == [
        "t.yaml: groups[0].target: give exactly one of group, uri or receive: external "
        "(got group and uri)",
        "t.yaml: groups[1].target.uri: 'tel:+15551234' is not a sip: or sips: URI",
        "t.yaml: groups[2].placement: give either region or workers (leave placement out: "
        "anywhere)",
        "t.yaml: groups[3].target: give exactly one of group, uri or receive: external (got none)",
        "t.yaml: groups[4].impairment: loss_percent and gilbert_p are exclusive loss models: "
        "set one of them, got loss_percent=5 and gilbert_p=0.1",
    ]


def test_group_field_checks() -> None:
    data = two_groups()
    data["groups"][0].update(codecs=["opus", "PCMU", "pcmu"], ptime_ms=40)
    data["groups"][1]["placement"] = {"workers": ["w1", "w2", "w1"]}
    assert errors(data) == [
        't.yaml: groups[0].codecs[2]: codec "PCMU" is listed twice (first at codecs[1])',
        "t.yaml: groups[0].ptime_ms: opus is sent with ptime 20 ms only, got 40",
        't.yaml: groups[1].placement.workers[2]: worker "w1" is listed twice (first at workers[0])',
    ]


def test_media_file_must_exist(tmp_path: Path) -> None:
    data = two_groups()
    data["groups"][0]["media_file"] = "speech.wav"
    assert errors(data, base_dir=tmp_path) == [
        f"t.yaml: groups[0].media_file: no such file: speech.wav ({tmp_path / 'speech.wav'})"
    ]


# -- cross-field errors ---------------------------------------------------------------------
def test_unknown_target_group_lists_the_known_ones() -> None:
    data = two_groups()
    data["groups"][0]["target"] = {"group": "calees"}
    data["groups"].insert(0, {"name": "idle", "endpoints": 1})
    assert errors(data) == [
        't.yaml: groups[1].target.group: no group named "calees" (known: idle, callers, callees)'
    ]


def test_a_group_cannot_call_itself() -> None:
    data = two_groups()
    data["groups"][1]["target"] = {"group": "callees"}
    assert errors(data) == [
        't.yaml: groups[1].target.group: group "callees" cannot call itself',
    ]


def test_a_group_cannot_both_place_and_receive_calls() -> None:
    data = two_groups()
    data["groups"][1]["target"] = {"uri": "sip:ivr@pbx.example.com"}
    assert errors(data) == [
        't.yaml: groups[1].target: a group cannot both place and receive calls: "callees" '
        'calls sip:ivr@pbx.example.com and is called by "callers"'
    ]
    data["groups"][1]["target"] = {"group": "third"}
    data["groups"].append({"name": "third", "endpoints": 1})
    data["groups"].append({"name": "more", "endpoints": 1, "target": {"group": "callees"}})
    assert errors(data) == [
        't.yaml: groups[1].target: a group cannot both place and receive calls: "callees" '
        'calls "third" and is called by "callers", "more"'
    ]


def test_receive_external_may_also_be_called_by_a_group() -> None:
    data = two_groups()
    data["groups"][1]["target"] = {"receive": "external"}
    test = parse_test(data)
    assert test.role(test.groups[1]) == "callee"


def test_duplicate_group_names() -> None:
    data = two_groups()
    data["groups"].append({"name": "callers", "endpoints": 1})
    assert errors(data) == ['t.yaml: groups[2].name: "callers" is already the name of groups[0]']


def test_total_endpoints_must_match_the_groups() -> None:
    assert errors(two_groups(endpoints=5)) == [
        "t.yaml: endpoints: 5 endpoints, but the groups add up to 4 (callers 2, callees 2)"
    ]
    assert parse_test(two_groups(endpoints=4)).endpoints == 4


def test_unknown_registrar_name() -> None:
    data = two_groups(registrars={"kamailio": kamailio("a", "b")})
    data["groups"][0]["registrar"] = "kamailo"
    assert errors(data) == [
        't.yaml: groups[0].registrar: no registrar named "kamailo" (known: kamailio, builtin)'
    ]


def test_builtin_is_reserved() -> None:
    data = two_groups(registrars={"builtin": kamailio("a")})
    assert errors(data) == [
        't.yaml: registrars.builtin: the name "builtin" is reserved for the built-in '
        "registrar (builtin: true)"
    ]
    data = two_groups(registrars={"builtin": {"builtin": True, "transport": "tcp"}})
    assert parse_test(data).registrars["builtin"].transport == "tcp"


def test_not_enough_accounts() -> None:
    data = two_groups(registrars={"kamailio": kamailio("a", "b", "c")})
    for group in data["groups"]:
        group["registrar"] = "kamailio"
    assert errors(data) == [
        "t.yaml: registrars.kamailio.accounts: 3 accounts for 4 endpoints (groups callers, callees)"
    ]
    data["registrars"]["kamailio"] = kamailio("a")
    data["groups"][1]["registrar"] = "builtin"
    assert errors(data) == [
        "t.yaml: registrars.kamailio.accounts: 1 account for 2 endpoints (group callers)"
    ]


def test_group_accounts_must_exist_and_be_used_once() -> None:
    data = two_groups(registrars={"k": kamailio("a", "b", "c", "d")})
    for group in data["groups"]:
        group["registrar"] = "k"
    data["groups"][0]["accounts"] = ["a", "x"]
    data["groups"][1]["accounts"] = ["b", "a"]
    assert errors(data) == [
        't.yaml: groups[0].accounts[1]: no account "x" in registrar "k"',
        't.yaml: groups[1].accounts[1]: account "a" is already used by groups[0].accounts[0]',
    ]
    data["groups"][1]["accounts"] = ["b", "b", "c"]
    assert errors(data) == [
        't.yaml: groups[1].accounts[1]: account "b" is listed twice (first at accounts[0])',
        "t.yaml: groups[1].accounts: 3 accounts for 2 endpoints",
    ]


def test_the_builtin_registrar_takes_no_group_accounts() -> None:
    data = two_groups()
    data["groups"][0]["accounts"] = ["a", "b"]
    assert errors(data) == [
        't.yaml: groups[0].accounts: registrar "builtin" is the built-in one: it generates '
        "accounts at run time; remove accounts"
    ]


def test_a_registrar_lists_an_account_once() -> None:
    data = two_groups(registrars={"k": kamailio("a", "b", "a")})
    assert errors(data) == [
        't.yaml: registrars.k.accounts[2]: account "a" is already listed at accounts[0]'
    ]


def test_all_problems_at_once() -> None:
    data = two_groups(endpoints=3, registrars={"k": kamailio("a")})
    data["groups"][0]["target"] = {"group": "nobody"}
    data["groups"][1]["registrar"] = "k"
    assert errors(data) == [
        "t.yaml: endpoints: 3 endpoints, but the groups add up to 4 (callers 2, callees 2)",
        't.yaml: groups[0].target.group: no group named "nobody" (known: callers, callees)',
        "t.yaml: registrars.k.accounts: 1 account for 2 endpoints (group callees)",
    ]


# -- files ----------------------------------------------------------------------------------
def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "name: t\ngroups:\n  - name: a\n    endpoints: [1\n")
    with pytest.raises(TestFileError) as info:
        load_test(path)
    assert str(info.value) == (
        f"{path}: line 5, column 1: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 4)"
    )


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "name: t\ngroups: []\nname: u\n")
    with pytest.raises(TestFileError) as info:
        load_test(path)
    assert (
        str(info.value) == f'{path}: line 3, column 1: invalid YAML: the key "name" is given twice'
    )


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(TestFileError) as info:
        load_test(tmp_path / "missing.yaml")
    assert str(info.value) == (
        f"{tmp_path / 'missing.yaml'}: cannot read the file: No such file or directory"
    )
    with pytest.raises(TestFileError) as info:
        load_test(write(tmp_path / "empty.yaml", "# nothing yet\n"))
    assert str(info.value).endswith(
        ": a test is a mapping of fields (name, groups...), got nothing"
    )


def test_validation_errors_of_a_file_name_it(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "name: t\ngroups:\n  - {name: a, endpoints: -1}\n")
    with pytest.raises(TestFileError) as info:
        load_test(path)
    assert str(info.value) == (
        f"{path}: groups[0].endpoints: Input should be greater than or equal to 1, got -1"
    )
    assert info.value.problems == (
        ("groups[0].endpoints", "Input should be greater than or equal to 1, got -1"),
    )
    assert isinstance(info.value, ValueError)


ACCOUNTS_TEST = """\
name: csv
registrars:
  k:
    domain: example.com
    accounts: [{username: first, password: p0}]
    accounts_file: users/accounts.csv
groups:
  - {name: callers, endpoints: 2, registrar: k, target: {group: callees}}
  - {name: callees, endpoints: 2, registrar: k}
"""


def test_accounts_file_is_relative_to_the_yaml(tmp_path: Path) -> None:
    (tmp_path / "users").mkdir()
    write(
        tmp_path / "users" / "accounts.csv", "username,password,realm\nu1,p1,\n\nu2,p2,r2\nu3,p3,\n"
    )
    test = load_test(write(tmp_path / "t.yaml", ACCOUNTS_TEST))
    registrar = test.registrars["k"]
    assert registrar.accounts_file == str(tmp_path / "users" / "accounts.csv")
    assert [(a.username, a.password, a.realm) for a in registrar.all_accounts] == [
        ("first", "p0", None),
        ("u1", "p1", None),
        ("u2", "p2", "r2"),
        ("u3", "p3", None),
    ]


def test_accounts_file_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "users").mkdir()
    write(tmp_path / "users" / "accounts.csv", "username,password\nu1,p1\nu2\nu 3,p3\nfirst,p\n")
    yaml_path = write(tmp_path / "t.yaml", ACCOUNTS_TEST)
    with pytest.raises(TestFileError) as info:
        load_test(yaml_path)
    assert str(info.value).splitlines() == [
        f"{yaml_path}: registrars.k.accounts_file: users/accounts.csv:3: expected 2 fields "
        "(username,password), got 1",
        f"{yaml_path}: registrars.k.accounts_file: users/accounts.csv:4: username: 'u 3' is not "
        "a SIP user name (RFC 3261 section 25.1)",
    ]
    write(tmp_path / "users" / "accounts.csv", "username,password\nu1,p1\nfirst,p\nu2,p\n")
    with pytest.raises(TestFileError) as info:
        load_test(yaml_path)
    assert str(info.value) == (
        f'{yaml_path}: registrars.k.accounts_file: users/accounts.csv:3: account "first" is '
        "already listed at accounts[0]"
    )


def test_accounts_file_header_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "users").mkdir()
    write(tmp_path / "users" / "accounts.csv", "user,pass\nu1,p1\n")
    yaml_path = write(tmp_path / "t.yaml", ACCOUNTS_TEST)
    with pytest.raises(TestFileError) as info:
        load_test(yaml_path)
    assert str(info.value) == (
        f"{yaml_path}: registrars.k.accounts_file: users/accounts.csv:1: the first line must "
        "be username,password[,realm], got 'user,pass'"
    )
    (tmp_path / "users" / "accounts.csv").unlink()
    with pytest.raises(TestFileError) as info:
        load_test(yaml_path)
    assert str(info.value) == (
        f"{yaml_path}: registrars.k.accounts_file: cannot read users/accounts.csv: "
        "No such file or directory"
    )


def test_loading_a_bad_file_writes_nothing(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", "name: t\ngroups:\n  - {name: a, endpoints: 0}\n")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(TestFileError):
        load_test(tmp_path / "t.yaml")
    assert sorted(tmp_path.rglob("*")) == before


# -- examples and schema --------------------------------------------------------------------
def test_examples_load() -> None:
    loaded = {path.name: load_test(path) for path in sorted(EXAMPLES.glob("*.yaml"))}
    assert set(loaded) >= {
        "quickstart.yaml",
        "kamailio.yaml",
        "two_regions.yaml",
        "impairment.yaml",
    }
    quickstart = loaded["quickstart.yaml"]
    assert [(g.name, g.endpoints) for g in quickstart.groups] == [("callers", 5), ("callees", 5)]
    assert (quickstart.call_duration_s, quickstart.buildup_s) == (10, 2)
    assert quickstart.groups[0].target is not None
    assert quickstart.groups[0].target.group == "callees"
    kam = loaded["kamailio.yaml"].registrars["kamailio"]
    assert (kam.domain, kam.host, kam.port, kam.transport) == (
        "127.0.0.1",
        "127.0.0.1",
        5060,
        "udp",
    )
    assert len(kam.all_accounts) >= sum(g.endpoints for g in loaded["kamailio.yaml"].groups)
    regions = [g.placement.region for g in loaded["two_regions.yaml"].groups if g.placement]
    assert regions == ["eu", "us"]
    impaired = loaded["impairment.yaml"].group("callees").impairment
    assert impaired is not None
    assert (impaired.direction, impaired.loss_percent, impaired.jitter_ms) == ("receive", 5, 20)


def test_json_schema_describes_the_test() -> None:
    schema = models.test_json_schema()
    assert schema["title"] == "Test"
    assert set(schema["required"]) == {"name", "groups"}
    assert schema["additionalProperties"] is False
    group = schema["$defs"]["Group"]
    assert group["properties"]["endpoints"]["minimum"] == 1
    assert schema["$defs"]["Registrar"]["properties"]["transport"]["enum"] == ["udp", "tcp"]
    json.dumps(schema)  # serialisable as it is
