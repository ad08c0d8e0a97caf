"""The location service: address-of-record -> contact bindings (RFC 3261 sections 10.3, 10.2).

Theory of operation
-------------------
Bindings live in ``{aor: {contact key: Binding}}``: a REGISTER touches one AOR, a lookup
reads one AOR, and neither ever scans the others. Each binding carries its absolute expiry
(``now`` + granted seconds), the Call-ID and CSeq of the REGISTER that made it (for the
ordering rules of section 10.3 steps 6 and 7) and the source address it came from, where a
NAT-friendly proxy sends requests for it.

Expiry is computed from ``now`` arguments, never from a clock. ``lookup`` drops the
expired bindings of the AOR it reads (lazy expiry); ``sweep(now)`` drops every expired
binding, popping a heap of expiry times so that it costs O(log n) per binding that
expired and nothing for the live ones. A refresh pushes a new heap entry; the old one is
recognised as outdated when it is popped.

:meth:`LocationService.register` applies a REGISTER (section 10.3 steps 6 to 8):
``Contact: *`` with ``Expires: 0`` removes every binding; each contact's expiry is its
``expires`` parameter, else the Expires header, else the default; a non-zero expiry below
the minimum fails the whole request with 423 and Min-Expires; above the maximum it is
shortened; an update that is not newer than the binding (same Call-ID, CSeq not higher)
fails the request with 500. Updates are all-or-nothing; a 200 lists every binding left.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from itertools import count

from callmeter.sip.core import Address
from callmeter.sip.message import Request
from callmeter.sip.uri import SipUri

__all__ = ["Binding", "LocationService", "RegisterOutcome", "contact_key"]

ContactKey = tuple[str, str | None, str, int | None, str]


def contact_key(uri: SipUri) -> ContactKey:
    """What makes two contacts the same binding: the parts section 19.1.4 always compares
    (scheme, user, host, port, transport), with case folded where the RFC folds it."""
    transport = uri.param("transport")
    return (
        uri.scheme.lower(),
        uri.user,
        uri.host.lower(),
        uri.port,
        "" if transport is None else transport.lower(),
    )


@dataclass(slots=True, eq=False)
class Binding:
    """One contact registered for an AOR."""

    aor: str
    uri: SipUri
    expires_at: float
    call_id: str
    cseq: int
    source: Address
    registered_at: float

    def remaining_s(self, now: float) -> int:
        """Whole seconds left, as a 200 to REGISTER reports them (section 10.3 step 8)."""
        return max(0, round(self.expires_at - now))


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    """What to answer a REGISTER with: 200 and the current bindings, or an error status
    (``min_expires`` is set for 423)."""

    status: int
    reason: str | None = None
    bindings: tuple[Binding, ...] = ()
    min_expires: int | None = None


_Update = tuple[ContactKey, SipUri, int]


class LocationService:
    """AOR -> bindings with expiries; see the module docstring."""

    __slots__ = (
        "_aors",
        "_counter",
        "_heap",
        "default_expires_s",
        "max_contacts",
        "max_expires_s",
        "min_expires_s",
    )

    def __init__(
        self,
        *,
        min_expires_s: int = 60,
        max_expires_s: int = 3600,
        default_expires_s: int = 3600,
        max_contacts: int = 10,
    ) -> None:
        if not 0 <= min_expires_s <= max_expires_s:
            raise ValueError(f"need 0 <= min_expires_s <= max_expires_s, got {min_expires_s}, "
                             f"{max_expires_s}")  # fmt: skip
        self.min_expires_s = min_expires_s
        self.max_expires_s = max_expires_s
        # The default is granted like a requested value: within [min, max].
        self.default_expires_s = min(max(default_expires_s, min_expires_s), max_expires_s)
        self.max_contacts = max_contacts
        self._aors: dict[str, dict[ContactKey, Binding]] = {}
        self._heap: list[tuple[float, int, str, ContactKey]] = []
        self._counter = count()

    # -- the store ------------------------------------------------------------------------
    def add(self, binding: Binding) -> None:
        """Add or replace the binding of ``binding.uri`` for ``binding.aor``."""
        key = contact_key(binding.uri)
        self._aors.setdefault(binding.aor, {})[key] = binding
        heapq.heappush(self._heap, (binding.expires_at, next(self._counter), binding.aor, key))

    def remove(self, aor: str, uri: SipUri | None = None) -> int:
        """Remove the binding of ``uri`` (every binding of ``aor`` when None); returns how
        many were removed."""
        bindings = self._aors.get(aor)
        if bindings is None:
            return 0
        if uri is None:
            del self._aors[aor]
            return len(bindings)
        removed = bindings.pop(contact_key(uri), None)
        if not bindings:
            del self._aors[aor]
        return 0 if removed is None else 1

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """The live bindings of ``aor``, expired ones dropped on the way."""
        bindings = self._aors.get(aor)
        if bindings is None:
            return []
        live = [b for b in bindings.values() if b.expires_at > now]
        if len(live) != len(bindings):
            self._drop_expired(aor, bindings, now)
        return live

    def sweep(self, now: float) -> int:
        """Drop every binding expired at ``now``; returns how many."""
        heap, removed = self._heap, 0
        while heap and heap[0][0] <= now:
            _, _, aor, key = heapq.heappop(heap)
            bindings = self._aors.get(aor)
            binding = bindings.get(key) if bindings is not None else None
            if bindings is not None and binding is not None and binding.expires_at <= now:
                del bindings[key]
                removed += 1
                if not bindings:
                    del self._aors[aor]
        return removed

    def next_expiry(self) -> float | None:
        """The earliest expiry on record (possibly of a binding refreshed since)."""
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        """Bindings stored, expired ones not yet swept included."""
        return sum(len(bindings) for bindings in self._aors.values())

    @property
    def aor_count(self) -> int:
        return len(self._aors)

    def _drop_expired(self, aor: str, bindings: dict[ContactKey, Binding], now: float) -> None:
        for key in [k for k, b in bindings.items() if b.expires_at <= now]:
            del bindings[key]
        if not bindings:
            del self._aors[aor]

    # -- REGISTER (section 10.3) -------------------------------------------------------------
    def register(self, aor: str, request: Request, source: Address, now: float) -> RegisterOutcome:
        """Apply a REGISTER for ``aor`` received from ``source``; see the module docstring."""
        call_id, cseq = request.call_id, request.cseq.seq
        current = {contact_key(b.uri): b for b in self.lookup(aor, now)}
        if request.contact_is_star:
            return self._remove_all(aor, request, current, now)
        updates = self._updates(request)
        if isinstance(updates, RegisterOutcome):
            return updates
        for key, _, _ in updates:
            binding = current.get(key)
            if binding is not None and binding.call_id == call_id and cseq <= binding.cseq:
                return RegisterOutcome(500, "Out Of Order CSeq")  # step 7
        added = {key for key, _, expires in updates if expires and key not in current}
        if len(current) + len(added) > self.max_contacts:
            return RegisterOutcome(403, f"Too Many Contacts (at most {self.max_contacts})")
        for _, uri, expires in updates:
            if expires == 0:
                self.remove(aor, uri)
            else:
                self.add(Binding(aor, uri, now + expires, call_id, cseq, source, now))
        return RegisterOutcome(200, bindings=tuple(self.lookup(aor, now)))

    def _remove_all(
        self, aor: str, request: Request, current: dict[ContactKey, Binding], now: float
    ) -> RegisterOutcome:
        """``Contact: *`` (section 10.3 step 6): only with ``Expires: 0``; a binding from
        the same Call-ID with a CSeq not lower than the request's aborts it."""
        if request.expires != 0:
            return RegisterOutcome(400, "Contact: * Requires Expires: 0")
        call_id, cseq = request.call_id, request.cseq.seq
        if any(b.call_id == call_id and cseq <= b.cseq for b in current.values()):
            return RegisterOutcome(500, "Out Of Order CSeq")
        self.remove(aor)
        return RegisterOutcome(200)

    def _updates(self, request: Request) -> list[_Update] | RegisterOutcome:
        """(key, uri, granted expiry) per Contact, or the 400/423 that refuses them all."""
        header = request.expires
        default = self.default_expires_s if header is None else header
        updates: list[_Update] = []
        for contact in request.contacts:
            uri = contact.uri
            if not isinstance(uri, SipUri):
                return RegisterOutcome(400, "Contact Must Be A SIP URI")
            expires = _expires_param(contact.param("expires"), default)
            if 0 < expires < self.min_expires_s:
                return RegisterOutcome(423, min_expires=self.min_expires_s)
            updates.append((contact_key(uri), uri, min(expires, self.max_expires_s)))
        return updates


def _expires_param(value: str | None, default: int) -> int:
    """A contact's ``expires`` parameter (sections 10.2.1.1 and 20.10); when it is absent or
    not a delta-seconds value, the default (the Expires header, else the registrar's)."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 10:
        return default
    return int(value)
