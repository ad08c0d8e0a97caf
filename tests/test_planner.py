"""The planner: accounts, roles, start and dial times, pairing, shards and placement."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import callmeter.planner
from callmeter.media.impairment import ImpairmentProfile
from callmeter.models import Placement, SipAccount, Test, parse_test
from callmeter.planner import (
    REGISTER_GRACE_S,
    EndpointPlan,
    PlanError,
    RegistrarEndpoint,
    RunPlan,
    accounts_needed,
    external_registrars,
    plan,
)
from tests.test_sans_io import FORBIDDEN, imported_modules


def builtin(n: int, *, name: str = "builtin") -> RegistrarEndpoint:
    """A built-in registrar on 127.0.0.1:5062 with ``n`` provisioned accounts."""
    accounts = tuple(SipAccount(username=f"u{i:04d}", password=f"p{i}") for i in range(n))
    return RegistrarEndpoint(name, "127.0.0.1", "127.0.0.1", 5062, "udp", accounts)


def make(groups: list[dict[str, Any]], **fields: Any) -> Test:
    return parse_test({"name": "t", "groups": groups, **fields})


def plan_builtin(test: Test, **kwargs: Any) -> RunPlan:
    return plan(test, {"builtin": builtin(test.total_endpoints)}, **kwargs)


def calls(caller: str, n: int, callee: str, m: int) -> list[dict[str, Any]]:
    return [
        {"name": caller, "endpoints": n, "target": {"group": callee}},
        {"name": callee, "endpoints": m},
    ]


def of_group(run: RunPlan, group: str) -> list[EndpointPlan]:
    return [p for p in run.endpoints if p.group == group]


# -- endpoints and accounts -----------------------------------------------------------------
def test_endpoints_per_group_ids_and_unique_accounts() -> None:
    run = plan_builtin(make(calls("callers", 3, "callees", 2)))
    assert [p.endpoint_id for p in run.endpoints] == [0, 1, 2, 3, 4]
    assert [(p.group, p.role) for p in run.endpoints] == [
        ("callers", "caller"),
        ("callers", "caller"),
        ("callers", "caller"),
        ("callees", "callee"),
        ("callees", "callee"),
    ]
    assert [p.username for p in run.endpoints] == ["u0000", "u0001", "u0002", "u0003", "u0004"]
    assert [p.password for p in run.endpoints] == ["p0", "p1", "p2", "p3", "p4"]
    first = run.endpoints[0]
    assert (first.domain, first.proxy, first.transport) == ("127.0.0.1", ("127.0.0.1", 5062), "udp")
    assert first.codecs == ("PCMU", "PCMA")
    assert (first.ptime_ms, first.call_duration_s, first.media_file) == (20, 10.0, None)
    assert "p0" not in repr(first)


def test_accounts_needed() -> None:
    data = calls("callers", 3, "callees", 2)
    data[1]["registrar"] = "k"
    test = make(
        data,
        registrars={
            "k": {
                "domain": "example.com",
                "accounts": [{"username": u, "password": "x"} for u in ("a", "b")],
            }
        },
    )
    assert accounts_needed(test) == {"builtin": 3, "k": 2}


def test_external_registrar_accounts_listed_and_default() -> None:
    accounts = [{"username": u, "password": f"pw-{u}", "realm": "r"} for u in "abcdef"]
    groups = [
        {"name": "first", "endpoints": 2, "registrar": "k", "target": {"group": "callees"}},
        {"name": "callees", "endpoints": 2, "registrar": "k", "accounts": ["b", "e"]},
        {"name": "last", "endpoints": 2, "registrar": "k", "target": {"group": "callees"}},
    ]
    registrar = {
        "domain": "sip.example.com",
        "host": "10.0.0.5",
        "port": 5080,
        "transport": "tcp",
        "outbound_proxy": "10.0.0.9:5070",
        "accounts": accounts,
    }
    test = make(groups, registrars={"k": registrar})
    resolved = external_registrars(test)
    assert list(resolved) == ["k"]
    assert resolved["k"].outbound_proxy == ("10.0.0.9", 5070)
    run = plan(test, resolved)
    # Listed accounts are reserved; the others go to the groups in file order.
    assert [(p.group, p.username) for p in run.endpoints] == [
        ("first", "a"),
        ("first", "c"),
        ("callees", "b"),
        ("callees", "e"),
        ("last", "d"),
        ("last", "f"),
    ]
    endpoint = run.endpoints[0]
    assert (endpoint.password, endpoint.realm, endpoint.domain) == ("pw-a", "r", "sip.example.com")
    assert endpoint.proxy == ("10.0.0.9", 5070)  # the outbound proxy, not the registrar
    assert endpoint.transport == "tcp"
    assert endpoint.callee_uri == "sip:b@sip.example.com"


def test_proxy_is_the_registrar_host_without_outbound_proxy() -> None:
    test = make(
        [{"name": "g", "endpoints": 1, "registrar": "k"}],
        registrars={
            "k": {
                "domain": "example.com",
                "host": "10.1.1.1",
                "port": 5070,
                "accounts": [{"username": "a", "password": "x"}],
            }
        },
    )
    (endpoint,) = plan(test, external_registrars(test)).endpoints
    assert (endpoint.domain, endpoint.proxy) == ("example.com", ("10.1.1.1", 5070))


def test_not_enough_accounts() -> None:
    test = make(calls("callers", 6, "callees", 4))
    with pytest.raises(PlanError) as info:
        plan(test, {"builtin": builtin(9)})
    assert str(info.value) == (
        'registrar "builtin" has 9 accounts for 10 endpoints (groups callers, callees)'
    )


def test_missing_registrar_and_listed_account() -> None:
    test = make(calls("callers", 1, "callees", 1))
    with pytest.raises(PlanError) as info:
        plan(test, {})
    assert str(info.value) == "no address and accounts for registrar builtin (resolved: none)"
    listed = make(
        [{"name": "g", "endpoints": 1, "registrar": "k", "accounts": ["bob"]}],
        registrars={"k": {"domain": "x.org", "accounts": [{"username": "bob", "password": "x"}]}},
    )
    other = RegistrarEndpoint("k", "x.org", "x.org", 5060, "udp", builtin(1).accounts)
    with pytest.raises(PlanError) as info:
        plan(listed, {"k": other})
    assert str(info.value) == 'groups[0].accounts: registrar "k" has no account bob'


def test_duplicate_provisioned_accounts() -> None:
    twice = (SipAccount(username="a", password="1"), SipAccount(username="a", password="2"))
    registrar = RegistrarEndpoint("builtin", "h", "h", 5060, "udp", twice)
    with pytest.raises(PlanError) as info:
        plan(make(calls("x", 1, "y", 1)), {"builtin": registrar})
    assert str(info.value) == 'registrar "builtin" lists account "a" twice'


# -- start and dial times -------------------------------------------------------------------
def test_buildup_spreads_100_endpoints_over_10_s() -> None:
    run = plan_builtin(make(calls("callers", 50, "callees", 50), buildup_s=10))
    starts = sorted(p.start_s for p in run.endpoints)
    assert starts == pytest.approx([i * 0.1 for i in range(100)])
    per_second = Counter(int(s + 1e-9) for s in starts)
    assert per_second == dict.fromkeys(range(10), 10)


def test_callees_start_before_callers_whatever_the_file_order() -> None:
    groups = calls("callers", 4, "callees", 4)
    groups.reverse()  # callees first in the file: ids follow the file, starts do not
    groups.append({"name": "idle", "endpoints": 2})
    run = plan_builtin(make(groups, buildup_s=10))
    callees = of_group(run, "callees")
    assert [p.endpoint_id for p in callees] == [0, 1, 2, 3]
    callers, idle = of_group(run, "callers"), of_group(run, "idle")
    assert max(p.start_s for p in callees + idle) < min(p.start_s for p in callers)
    assert [p.start_s for p in callees + idle] == pytest.approx([0, 1, 2, 3, 4, 5])
    assert [p.start_s for p in callers] == pytest.approx([6, 7, 8, 9])


def test_a_caller_dials_once_its_callee_had_time_to_register() -> None:
    run = plan_builtin(make(calls("callers", 2, "callees", 2), buildup_s=2))
    # starts: callees 0.0 0.5, callers 1.0 1.5
    by_id = {p.endpoint_id: p for p in run.endpoints}
    for caller in of_group(run, "callers"):
        assert caller.callee_id is not None
        callee = by_id[caller.callee_id]
        assert caller.dial_s == max(caller.start_s, callee.start_s + REGISTER_GRACE_S)
    assert [p.dial_s for p in of_group(run, "callers")] == [1.0, 1.5]
    run = plan_builtin(make(calls("callers", 2, "callees", 2)))  # no buildup: all start at 0
    assert [p.start_s for p in run.endpoints] == [0.0] * 4
    assert [p.dial_s for p in of_group(run, "callers")] == [REGISTER_GRACE_S] * 2
    assert all(p.dial_s is None for p in of_group(run, "callees"))
    assert run.duration_s == REGISTER_GRACE_S + 10.0


def test_duration_is_the_last_dial_plus_the_call() -> None:
    run = plan_builtin(make(calls("callers", 50, "callees", 50), buildup_s=10, call_duration_s=30))
    assert run.duration_s == pytest.approx(9.9 + 30)


# -- pairing --------------------------------------------------------------------------------
def test_one_to_one_pairing() -> None:
    run = plan_builtin(make(calls("callers", 3, "callees", 3)))
    pairs = [(p.endpoint_id, p.callee_id, p.callee_uri) for p in of_group(run, "callers")]
    assert pairs == [
        (0, 3, "sip:u0003@127.0.0.1"),
        (1, 4, "sip:u0004@127.0.0.1"),
        (2, 5, "sip:u0005@127.0.0.1"),
    ]
    assert all(p.callee_id is None and p.callee_uri is None for p in of_group(run, "callees"))


def test_round_robin_pairing_across_caller_groups() -> None:
    groups = [
        *calls("a", 3, "callees", 2),
        {"name": "b", "endpoints": 2, "target": {"group": "callees"}},
    ]
    run = plan_builtin(make(groups))
    # ids: a 0..2, callees 3..4, b 5..6; callers in file order a0 a1 a2 b0 b1
    assert {p.endpoint_id: p.callee_id for p in run.endpoints if p.role == "caller"} == {
        0: 3,
        1: 4,
        2: 3,
        5: 4,
        6: 3,
    }
    run = plan_builtin(make(calls("few", 2, "many", 5)))
    assert [p.callee_id for p in of_group(run, "few")] == [2, 3]  # the other callees wait


def test_external_uri_and_receive_external() -> None:
    groups = [
        {"name": "out", "endpoints": 2, "target": {"uri": "sip:+15550100@pstn.example.com"}},
        {"name": "in", "endpoints": 2, "target": {"receive": "external"}},
    ]
    run = plan_builtin(make(groups, buildup_s=4, call_duration_s=20))
    out, inbound = of_group(run, "out"), of_group(run, "in")
    assert [(p.role, p.callee_uri, p.callee_id) for p in out] == [
        ("caller", "sip:+15550100@pstn.example.com", None)
    ] * 2
    assert [p.dial_s for p in out] == [p.start_s for p in out] == [2.0, 3.0]  # no grace needed
    assert [(p.role, p.callee_uri, p.dial_s) for p in inbound] == [("receiver", None, None)] * 2
    assert [p.start_s for p in inbound] == [0.0, 1.0]  # receivers first
    assert run.duration_s == 3.0 + 20


def test_the_media_port_is_shared_between_our_own_endpoints_only() -> None:
    groups = [
        *calls("callers", 2, "callees", 2),
        {"name": "out", "endpoints": 1, "target": {"uri": "sip:echo@pbx.example.com"}},
        {"name": "in", "endpoints": 1, "target": {"receive": "external"}},
        {"name": "idle", "endpoints": 1},
    ]
    run = plan_builtin(make(groups))
    shared = {p.group: p.shared_media_port for p in run.endpoints}
    assert shared == {
        "callers": True, "callees": True, "out": False, "in": False, "idle": False
    }  # fmt: skip


@pytest.mark.parametrize(("choice", "expected"), [("shared", True), ("per_call", False)])
def test_a_group_may_choose_its_media_port(choice: str, expected: bool) -> None:
    groups = [
        {"name": "out", "endpoints": 1, "target": {"uri": "sip:echo@pbx.example.com"},
         "media_port": choice},
        {"name": "callers", "endpoints": 1, "target": {"group": "callees"}, "media_port": choice},
        {"name": "callees", "endpoints": 1, "media_port": choice},
    ]  # fmt: skip
    run = plan_builtin(make(groups))
    assert {p.shared_media_port for p in run.endpoints} == {expected}


def test_an_unknown_media_port_names_the_choices() -> None:
    with pytest.raises(ValueError) as excinfo:
        make([{"name": "g", "endpoints": 1, "media_port": "pooled"}])
    assert str(excinfo.value) == (
        "<test>: groups[0].media_port: Input should be 'auto', 'shared' or 'per_call', got 'pooled'"
    )


def test_receivers_only_stay_registered_for_a_call_duration() -> None:
    run = plan_builtin(
        make(
            [{"name": "in", "endpoints": 4, "target": {"receive": "external"}}],
            buildup_s=2,
            call_duration_s=5,
        )
    )
    assert run.duration_s == pytest.approx(1.5 + 5)


# -- impairment -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("direction", "send", "receive"),
    [("receive", False, True), ("send", True, False), ("both", True, True)],
)
def test_impairment_direction_and_seed(direction: str, send: bool, receive: bool) -> None:
    groups = calls("callers", 2, "callees", 2)
    groups[1]["impairment"] = {
        "loss_percent": 5,
        "jitter_ms": 20,
        "direction": direction,
        "seed": 100,
    }
    run = plan_builtin(make(groups))
    profile = ImpairmentProfile(loss_percent=5, jitter_ms=20)
    for p in of_group(run, "callees"):
        assert p.send_impairment == (profile if send else None)
        assert p.receive_impairment == (profile if receive else None)
    assert [p.impairment_seed for p in of_group(run, "callees")] == [102, 103]
    assert all(p.send_impairment is p.receive_impairment is None for p in of_group(run, "callers"))


# -- shards and placement -------------------------------------------------------------------
def test_shards_are_balanced_and_cover_every_endpoint_once() -> None:
    test = make(calls("callers", 500, "callees", 500))
    assert [len(s.endpoints) for s in plan_builtin(test, shard_capacity=500).shards] == [500, 500]
    test = make(calls("callers", 501, "callees", 500))
    run = plan_builtin(test, shard_capacity=500)
    assert [len(s.endpoints) for s in run.shards] == [334, 334, 333]
    assert [s.shard_id for s in run.shards] == [0, 1, 2]
    ids = sorted(p.endpoint_id for s in run.shards for p in s.endpoints)
    assert ids == list(range(1001))
    assert [len(s.endpoints) for s in plan_builtin(test).shards] == [501, 500]  # capacity 1000


def test_each_shard_starts_its_endpoints_over_the_whole_buildup() -> None:
    run = plan_builtin(make(calls("callers", 50, "callees", 50), buildup_s=10), shard_capacity=50)
    for shard in run.shards:
        starts = [p.start_s for p in shard.endpoints]
        assert starts == sorted(starts)
        assert starts[0] < 0.2 and starts[-1] > 9.7  # dealt in start order, not cut in blocks


def test_placement_by_region_and_resources() -> None:
    groups = calls("eu-callers", 3, "us-callees", 3)
    groups[0]["placement"] = {"region": "eu"}
    groups[1]["placement"] = {"region": "us"}
    groups.append({"name": "anywhere", "endpoints": 2})
    run = plan_builtin(make(groups), shard_capacity=2)
    summary = [
        (s.placement.region if s.placement else None, [p.group for p in s.endpoints])
        for s in run.shards
    ]
    assert summary == [
        ("eu", ["eu-callers", "eu-callers"]),
        ("eu", ["eu-callers"]),
        ("us", ["us-callees", "us-callees"]),
        ("us", ["us-callees"]),
        (None, ["anywhere", "anywhere"]),
    ]
    assert [s.resources() for s in run.shards] == [
        {"region:eu": 2.0},
        {"region:eu": 1.0},
        {"region:us": 2.0},
        {"region:us": 1.0},
        {},
    ]


def test_workers_placement_spreads_round_robin_one_shard_per_worker() -> None:
    groups = [
        {
            "name": "callers",
            "endpoints": 5,
            "target": {"group": "callees"},
            "placement": {"workers": ["w1", "w2"]},
        },
        {"name": "callees", "endpoints": 5, "placement": {"workers": ["w2"]}},
    ]
    run = plan_builtin(make(groups, buildup_s=10))
    assert [(s.placement, [p.endpoint_id for p in s.endpoints]) for s in run.shards] == [
        (Placement(workers=["w1"]), [0, 2, 4]),
        (Placement(workers=["w2"]), [5, 6, 7, 8, 9, 1, 3]),  # start order: callees first
    ]
    assert [s.resources() for s in run.shards] == [{"worker:w1": 3.0}, {"worker:w2": 7.0}]


def test_a_run_plan_pickles() -> None:
    groups = calls("callers", 2, "callees", 2)
    groups[1]["impairment"] = {"loss_percent": 1}
    groups[1]["placement"] = {"region": "eu"}
    run = plan_builtin(make(groups))
    again = pickle.loads(pickle.dumps(run))
    assert again == run
    assert again.shards[1].endpoints[0].receive_impairment == ImpairmentProfile(loss_percent=1)


def test_shard_capacity_must_be_positive() -> None:
    with pytest.raises(PlanError, match="shard_capacity must be at least 1, got 0"):
        plan_builtin(make(calls("a", 1, "b", 1)), shard_capacity=0)


def test_the_planner_is_pure() -> None:
    assert imported_modules(Path(callmeter.planner.__file__)) & FORBIDDEN == set()
