"""Shared-socket mode: many user agents behind one socket, like a trunk (sans-I/O).

By default every endpoint owns a socket, like a real phone. For trunk-like load,
:class:`SharedSocket` carries any number of :class:`~callmeter.sip.useragent.UserAgent`
instances on one address. It parses each datagram once and routes it:

- requests by the Request-URI user (each agent's Contact user is its username), or by the
  Call-ID of a dialog it already routed;
- responses by Call-ID: the agents' own Call-IDs carry the agent's label, and Call-IDs of
  calls they received are remembered when the INVITE is routed.

All agents share one :class:`~callmeter.sip.layer.Wire`: one outgoing queue, one timer heap and
one set of agents with events waiting, so nothing scans all agents per datagram or timer.
"""

from __future__ import annotations

from collections import OrderedDict

from callmeter.sip.core import Address
from callmeter.sip.errors import ParseError
from callmeter.sip.layer import TransactionLayer, Wire
from callmeter.sip.message import Request, Response, parse_message
from callmeter.sip.transaction import ServerTransaction
from callmeter.sip.uri import SipUri
from callmeter.sip.useragent import UserAgent

__all__ = ["SharedSocket"]

MAX_REMEMBERED_CALLS = 65536


class SharedSocket(TransactionLayer):
    """A :class:`~callmeter.sip.core.SansIOCore` routing one socket's traffic to its agents.

    It is itself a transaction layer only to answer what no agent can take: malformed
    requests (400) and requests for unknown users (404) or dialogs (481)."""

    def __init__(self, local_addr: Address = ("127.0.0.1", 0), *, transport: str = "UDP") -> None:
        super().__init__(local_addr, transport=transport, wire=Wire())
        self.agents: list[UserAgent] = []
        self._by_user: dict[str, UserAgent] = {}
        self._by_call: OrderedDict[str, UserAgent] = OrderedDict()

    def add(self, agent: UserAgent) -> None:
        """Carry ``agent`` on this socket (before it sends anything)."""
        agent.wire = self.wire
        agent.local_addr = self.local_addr
        agent.label = f"-{len(self.agents)}"
        self.agents.append(agent)
        self._by_user[agent.config.username] = agent

    def bind(self, local_addr: Address) -> None:
        """The shell bound the socket: every agent takes the real address."""
        self.local_addr = local_addr
        for agent in self.agents:
            agent.local_addr = local_addr

    def ready(self) -> list[TransactionLayer]:
        """The agents (and this socket) that have events waiting; clears the set."""
        ready = list(self.wire.ready)
        self.wire.ready.clear()
        return ready

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if not data.strip(b"\r\n"):
            return
        try:
            message = parse_message(data)
        except ParseError:
            super().receive_datagram(data, addr, now)  # counts, traces and answers 400
            return
        agent = self._route(message)
        if agent is None:
            super().receive_message(message, data, addr, now)
        else:
            agent.receive_message(message, data, addr, now)

    def _route(self, message: Request | Response) -> UserAgent | None:
        call_id = message.call_id
        agent = self._by_call.get(call_id)
        if agent is not None:
            return agent
        if isinstance(message, Request):
            uri = message.uri
            agent = self._by_user.get(uri.user or "") if isinstance(uri, SipUri) else None
            if agent is not None and message.method == "INVITE":
                self._remember(call_id, agent)
            return agent
        label = call_id.partition("@")[0].rpartition("-")[2]
        if label.isdigit() and int(label) < len(self.agents):
            return self.agents[int(label)]
        return None

    def _remember(self, call_id: str, agent: UserAgent) -> None:
        self._by_call[call_id] = agent
        if len(self._by_call) > MAX_REMEMBERED_CALLS:
            self._by_call.popitem(last=False)

    def request_received(
        self, request: Request, tx: ServerTransaction | None, addr: Address, now: float
    ) -> None:
        """No agent takes it: 404 for an unknown user, 481 inside an unknown dialog."""
        if tx is not None:
            status = 481 if request.to.tag else 404
            self.respond(tx, self.make_response(request, status), now)
