"""The planner: a validated :class:`~callmeter.models.Test` becomes endpoint plans and shards.

Theory of operation
-------------------
``plan(test, registrars)`` is pure (no clock, no I/O, no Ray): the caller resolves where each
registrar the test uses is and which accounts it has (the driver starts the built-in registrar
and provisions ``accounts_needed(test)`` accounts on it; an external one comes from the test,
see :func:`external_registrars`), and gets back a :class:`RunPlan`:

1. **Endpoints.** Each group contributes ``endpoints`` endpoints, numbered 0..N-1 across the run
   in file order. Each gets its own account: the usernames the group lists, or else the next
   accounts of its registrar that no group lists and no earlier group took.
2. **Roles.** A group that targets a group or a URI holds *callers*; a group that another group
   targets holds *callees*; any other group holds *receivers* (they register and wait for calls
   from outside, or only stay registered).
3. **Start times.** Buildup spreads the N starts evenly: the i-th endpoint to start registers at
   ``i * buildup_s / N``. Every callee and receiver starts before every caller, so the callees
   are registered before anyone dials them; a caller dials at
   ``max(start_s, callee start_s + REGISTER_GRACE_S)``.
4. **Pairing.** The callers of all groups that target one group (in file order) take that
   group's callees round-robin: caller k calls callee ``k % n_callees``, which is one-to-one
   when the sizes match.
5. **Shards.** Endpoints are grouped by placement (a group placed on several workers is dealt
   round-robin over them, one worker per endpoint), then each placement's endpoints are cut into
   ``ceil(n / shard_capacity)`` shards of balanced size. Endpoints are dealt to the shards in
   start order, so every shard starts its endpoints at the same pace over the whole buildup
   instead of one shard taking all the early registrations.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from callmeter.media.impairment import ImpairmentProfile
from callmeter.models import Group, Placement, Role, SipAccount, Test, Transport

__all__ = [
    "REGION_RESOURCE",
    "REGISTER_GRACE_S",
    "WORKER_RESOURCE",
    "EndpointPlan",
    "PlanError",
    "RegistrarEndpoint",
    "RunPlan",
    "ShardPlan",
    "accounts_needed",
    "external_registrars",
    "plan",
]

# Ray custom resources pinning a shard (actors/ and cluster.yaml mirror these names).
REGION_RESOURCE = "region:{}"
WORKER_RESOURCE = "worker:{}"
REGISTER_GRACE_S = 1.0  # a caller dials this long after its callee started registering
DEFAULT_SHARD_CAPACITY = 1000


class PlanError(ValueError):
    """The test cannot be planned with these registrars (missing registrar, accounts)."""


@dataclass(frozen=True, slots=True)
class RegistrarEndpoint:
    """A registrar resolved by the caller of :func:`plan`: where it is and its accounts."""

    name: str
    domain: str
    host: str
    port: int
    transport: Transport
    accounts: tuple[SipAccount, ...] = field(repr=False)
    outbound_proxy: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class EndpointPlan:
    """Everything one endpoint needs; picklable (it travels to the shard actors)."""

    endpoint_id: int  # 0..N-1, unique in the run
    group: str
    username: str
    password: str = field(repr=False)
    realm: str | None
    domain: str
    proxy: tuple[str, int]  # where requests go: the outbound proxy, else the registrar
    transport: Transport
    role: Role
    callee_uri: str | None  # caller: sip:user@domain of its callee, or the external URI
    callee_id: int | None  # caller: endpoint_id of its callee (None for an external URI)
    start_s: float  # offset from the run start at which it registers
    dial_s: float | None  # caller: offset at which it dials (once registered)
    call_duration_s: float
    codecs: tuple[str, ...]
    ptime_ms: int
    ring_time_s: float  # a callee rings this long (180) before it answers
    media_file: str | None  # absolute path; None: the built-in speech-like signal
    send_impairment: ImpairmentProfile | None
    receive_impairment: ImpairmentProfile | None
    impairment_seed: int
    shared_media_port: bool = False
    """Media through the shard's one shared port (``callmeter.transport.mediaport``)."""


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """Endpoints that run together on one event loop (one actor), all with one placement."""

    shard_id: int
    placement: Placement | None
    endpoints: tuple[EndpointPlan, ...]

    def resources(self) -> dict[str, float]:
        """Ray custom resources to pin the shard: one unit per endpoint of its region or
        worker, ``{}`` when it may run anywhere."""
        if self.placement is None:
            return {}
        if self.placement.region is not None:
            return {REGION_RESOURCE.format(self.placement.region): float(len(self.endpoints))}
        assert self.placement.workers is not None and len(self.placement.workers) == 1
        return {WORKER_RESOURCE.format(self.placement.workers[0]): float(len(self.endpoints))}


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A test planned for one run: shards, and all endpoints by ``endpoint_id``."""

    test: Test
    shards: tuple[ShardPlan, ...]
    endpoints: tuple[EndpointPlan, ...]
    duration_s: float  # when the last call should have ended, from the run start


def accounts_needed(test: Test) -> dict[str, int]:
    """Registrar name -> how many endpoints use it (each needs its own account), for the
    registrars some group uses, in the order groups first use them."""
    needed: dict[str, int] = {}
    for group in test.groups:
        needed[group.registrar] = needed.get(group.registrar, 0) + group.endpoints
    return needed


def external_registrars(test: Test) -> dict[str, RegistrarEndpoint]:
    """The test's external registrars that some group uses, resolved from the test itself."""
    resolved: dict[str, RegistrarEndpoint] = {}
    for name in accounts_needed(test):
        registrar = test.registrars[name]
        if registrar.builtin:
            continue
        assert registrar.domain is not None and registrar.host is not None  # validated
        resolved[name] = RegistrarEndpoint(
            name=name,
            domain=registrar.domain,
            host=registrar.host,
            port=registrar.port,
            transport=registrar.transport,
            accounts=registrar.all_accounts,
            outbound_proxy=registrar.outbound_proxy_address(),
        )
    return resolved


def _shared_media_port(group: Group, role: Role, callee_id: int | None) -> bool:
    """``auto`` shares the port when both ends are ours (they declare their SSRCs): callers of
    a group and the callees they call, never calls with the outside."""
    if group.media_port != "auto":
        return group.media_port == "shared"
    return callee_id is not None if role == "caller" else role == "callee"


def plan(
    test: Test,
    registrars: Mapping[str, RegistrarEndpoint],
    *,
    shard_capacity: int = DEFAULT_SHARD_CAPACITY,
) -> RunPlan:
    """Plan a run of ``test``: ``registrars`` maps each registrar name the groups use to where
    it is and its accounts. Raises PlanError when a registrar is missing or short of accounts."""
    if shard_capacity < 1:
        raise PlanError(f"shard_capacity must be at least 1, got {shard_capacity}")
    accounts = _assign_accounts(test, registrars)
    slots = [(group, index) for group in test.groups for index in range(group.endpoints)]
    shared = {g.name: _GroupShared.of(test, g, registrars[g.registrar]) for g in test.groups}
    callers = [shared[group.name].role == "caller" for group, _ in slots]
    # Start order: callees and receivers first, then callers; file order within each.
    order = sorted(range(len(slots)), key=lambda eid: (callers[eid], eid))
    step_s = test.buildup_s / len(slots)
    start_s = [0.0] * len(slots)
    for rank, eid in enumerate(order):
        start_s[eid] = rank * step_s
    callees = _pair_callers(test, slots)
    endpoints: list[EndpointPlan] = []
    for eid, (group, index) in enumerate(slots):
        common, account = shared[group.name], accounts[group.name][index]
        callee_uri, callee_id, dial_s = common.external_uri, None, None
        if common.role == "caller":
            dial_s = start_s[eid]
            if eid in callees:
                callee_id = callees[eid]
                callee_group, callee_index = slots[callee_id]
                user = accounts[callee_group.name][callee_index].username
                callee_uri = f"sip:{user}@{shared[callee_group.name].domain}"
                dial_s = max(dial_s, start_s[callee_id] + REGISTER_GRACE_S)
        endpoints.append(
            EndpointPlan(
                endpoint_id=eid,
                group=group.name,
                username=account.username,
                password=account.password,
                realm=account.realm,
                domain=common.domain,
                proxy=common.proxy,
                transport=common.transport,
                role=common.role,
                callee_uri=callee_uri,
                callee_id=callee_id,
                start_s=start_s[eid],
                dial_s=dial_s,
                call_duration_s=test.call_duration_s,
                codecs=common.codecs,
                ptime_ms=group.ptime_ms,
                ring_time_s=group.ring_s,
                media_file=group.media_file,
                send_impairment=common.send_impairment,
                receive_impairment=common.receive_impairment,
                impairment_seed=common.seed + eid,
                shared_media_port=_shared_media_port(group, common.role, callee_id),
            )
        )
    duration_s = max(p.start_s if p.dial_s is None else p.dial_s for p in endpoints)
    return RunPlan(
        test=test,
        shards=_cut_shards(endpoints, slots, shard_capacity),
        endpoints=tuple(endpoints),
        duration_s=duration_s + test.call_duration_s,
    )


@dataclass(frozen=True, slots=True)
class _GroupShared:
    """What every endpoint of a group shares, worked out once per group (one impairment
    profile object for all of them)."""

    role: Role
    domain: str
    proxy: tuple[str, int]
    transport: Transport
    external_uri: str | None
    codecs: tuple[str, ...]
    send_impairment: ImpairmentProfile | None
    receive_impairment: ImpairmentProfile | None
    seed: int

    @classmethod
    def of(cls, test: Test, group: Group, registrar: RegistrarEndpoint) -> _GroupShared:
        impairment = group.impairment
        profile = impairment.profile() if impairment is not None else None
        direction = impairment.direction if impairment is not None else None
        return cls(
            role=test.role(group),
            domain=registrar.domain,
            proxy=registrar.outbound_proxy or (registrar.host, registrar.port),
            transport=registrar.transport,
            external_uri=group.target.uri if group.target is not None else None,
            codecs=tuple(group.codecs),
            send_impairment=profile if direction in ("send", "both") else None,
            receive_impairment=profile if direction in ("receive", "both") else None,
            seed=impairment.seed if impairment is not None else 0,
        )


def _assign_accounts(
    test: Test, registrars: Mapping[str, RegistrarEndpoint]
) -> dict[str, list[SipAccount]]:
    """Group name -> its accounts, one per endpoint: the ones it lists, else the next ones
    of its registrar that no group lists and no earlier group took."""
    needed = accounts_needed(test)
    missing = [name for name in needed if name not in registrars]
    if missing:
        raise PlanError(
            f"no address and accounts for registrar {', '.join(missing)} "
            f"(resolved: {', '.join(registrars) or 'none'})"
        )
    listed = {(g.registrar, user) for g in test.groups for user in g.accounts or ()}
    pools: dict[str, list[SipAccount]] = {}
    by_user: dict[str, dict[str, SipAccount]] = {}
    for name in needed:
        by_user[name] = _accounts_by_user(registrars[name])
        if len(registrars[name].accounts) < needed[name]:
            users = [g.name for g in test.groups if g.registrar == name]
            raise PlanError(
                f'registrar "{name}" has {len(registrars[name].accounts)} accounts for '
                f"{needed[name]} endpoints (groups {', '.join(users)})"
            )
        pools[name] = [a for a in registrars[name].accounts if (name, a.username) not in listed]
        pools[name].reverse()  # pop() from the end takes them in order
    assigned: dict[str, list[SipAccount]] = {}
    for i, group in enumerate(test.groups):
        if group.accounts is not None:
            unknown = [u for u in group.accounts if u not in by_user[group.registrar]]
            if unknown:
                raise PlanError(
                    f'groups[{i}].accounts: registrar "{group.registrar}" has no account '
                    f"{', '.join(unknown)}"
                )
            assigned[group.name] = [by_user[group.registrar][u] for u in group.accounts]
        else:
            pool = pools[group.registrar]
            assigned[group.name] = [pool.pop() for _ in range(group.endpoints)]
    return assigned


def _accounts_by_user(registrar: RegistrarEndpoint) -> dict[str, SipAccount]:
    by_user: dict[str, SipAccount] = {}
    for account in registrar.accounts:
        if account.username in by_user:
            raise PlanError(
                f'registrar "{registrar.name}" lists account "{account.username}" twice'
            )
        by_user[account.username] = account
    return by_user


def _pair_callers(test: Test, slots: list[tuple[Group, int]]) -> dict[int, int]:
    """Caller endpoint_id -> callee endpoint_id, round-robin per callee group."""
    ids: dict[str, list[int]] = defaultdict(list)
    for eid, (group, _) in enumerate(slots):
        ids[group.name].append(eid)
    callees: dict[int, int] = {}
    for group in test.groups:
        targeted = ids[group.name]
        callers = [eid for g in test.callers_of(group.name) for eid in ids[g.name]]
        for k, caller in enumerate(callers):
            callees[caller] = targeted[k % len(targeted)]
    return callees


def _placement_key(group: Group, index: int) -> tuple[str, str] | None:
    placement = group.placement
    if placement is None:
        return None
    if placement.region is not None:
        return ("region", placement.region)
    assert placement.workers is not None
    return ("worker", placement.workers[index % len(placement.workers)])


def _cut_shards(
    endpoints: list[EndpointPlan], slots: list[tuple[Group, int]], capacity: int
) -> tuple[ShardPlan, ...]:
    buckets: dict[tuple[str, str] | None, list[EndpointPlan]] = {}
    for endpoint, (group, index) in zip(endpoints, slots, strict=True):
        buckets.setdefault(_placement_key(group, index), []).append(endpoint)
    shards: list[ShardPlan] = []
    for key, members in buckets.items():
        placement = None
        if key is not None:
            kind, name = key
            placement = Placement(region=name) if kind == "region" else Placement(workers=[name])
        members.sort(key=lambda p: (p.start_s, p.endpoint_id))
        count = math.ceil(len(members) / capacity)
        for k in range(count):
            dealt = tuple(members[k::count])  # sizes differ by at most one
            shards.append(ShardPlan(shard_id=len(shards), placement=placement, endpoints=dealt))
    return tuple(shards)
