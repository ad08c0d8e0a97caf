"""REGISTER processing (RFC 3261 section 10.3) and digest challenges, as pure decisions.

:class:`RegisterHandler` turns a REGISTER into a :class:`Reply` (status, reason, extra
headers); the registrar core wraps it in a response on the server transaction. The steps
follow section 10.3: the Request-URI must name our domain (step 1), Require must list no
extension (step 2, 420), the credentials must be valid (step 3, 401; RFC 7616 stale nonces
are re-challenged with ``stale=true``), the authenticated user must own the To AOR (step 4,
403), the AOR must be ours (step 5, 404), then the location service applies the bindings
(steps 6 to 8: 423 Interval Too Brief with Min-Expires, 200 with every binding's remaining
``expires``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from callmeter.registrar.guard import DigestGuard, Verdict
from callmeter.registrar.location import LocationService
from callmeter.registrar.routing import LocalIdentity
from callmeter.sip.core import Address
from callmeter.sip.message import Request

__all__ = ["RegisterHandler", "Reply", "challenge_reply"]

Extra = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """A response to send on a server transaction: status, reason (None: the standard
    phrase) and header lines to add to the copied ones."""

    status: int
    reason: str | None = None
    headers: Extra = ()


def challenge_reply(guard: DigestGuard, status: int, verdict: Verdict, now: float) -> Reply:
    """401 with WWW-Authenticate or 407 with Proxy-Authenticate and a fresh nonce (section
    22.1, 22.3); ``stale=true`` when the password was right (RFC 7616 section 3.3)."""
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return Reply(status, headers=((header, guard.challenge(now, stale=verdict is Verdict.STALE)),))


class RegisterHandler:
    """Answers REGISTER requests for one domain; see the module docstring."""

    __slots__ = ("authenticate", "counters", "guard", "identity", "location")

    def __init__(
        self,
        identity: LocalIdentity,
        location: LocationService,
        guard: DigestGuard,
        counters: Counter[str],
        *,
        authenticate: bool = True,
    ) -> None:
        self.identity = identity
        self.location = location
        self.guard = guard
        self.counters = counters
        self.authenticate = authenticate

    def handle(self, request: Request, source: Address, now: float) -> Reply:
        if not self.identity.is_local(request.uri):
            return Reply(404, "Domain Not Served Here")
        required = request.tokens("require")
        if required:
            return Reply(420, headers=(("Unsupported", ", ".join(required)),))
        username = None
        if self.authenticate:
            verdict, username = self.guard.check(request, "Authorization", now)
            if verdict is not Verdict.AUTHENTICATED:
                self.counters["auth_rejected"] += verdict is Verdict.REJECTED
                return challenge_reply(self.guard, 401, verdict, now)
        to_uri = request.to.uri
        aor = self.identity.local_aor(to_uri)
        if aor is None:
            return Reply(404)
        if username is not None and username != getattr(to_uri, "user", None):
            return Reply(403, "Forbidden (authenticated user does not own the AOR)")
        outcome = self.location.register(aor, request, source, now)
        if outcome.status != 200:
            minimum = outcome.min_expires
            extra: Extra = () if minimum is None else (("Min-Expires", str(minimum)),)
            return Reply(outcome.status, outcome.reason, extra)
        self.counters["registers" if outcome.bindings else "unregisters"] += 1
        contacts = tuple(
            ("Contact", f"<{b.uri}>;expires={b.remaining_s(now)}") for b in outcome.bindings
        )
        return Reply(200, headers=contacts)
