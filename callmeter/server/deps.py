"""FastAPI dependencies: the platform, the authenticated caller, pagination and envelopes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from callmeter.server import repo_people
from callmeter.server.auth import API_KEY_PREFIX, hash_token
from callmeter.server.context import Caller, Platform
from callmeter.server.errors import Unauthenticated
from callmeter.server.payloads import Envelope, Page

__all__ = ["CallerDep", "PageDep", "Paging", "PlatformDep", "envelope", "paged"]

T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="a session token or an API key (cmk_...)")


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def get_caller(
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("log in first: send Authorization: Bearer <token or API key>")
    token = credentials.credentials
    now = platform.clock()
    with platform.db.transaction() as tx:
        if token.startswith(API_KEY_PREFIX):
            key = repo_people.api_key_by_hash(tx, hash_token(token), now)
            if key is None:
                raise Unauthenticated("unknown or revoked API key")
            user = repo_people.get_user(tx, key["user_id"])
            return Caller(user.user_id, user.email, key["api_key_id"], key["organization_id"])
        user_id = repo_people.session_user_id(tx, hash_token(token), now)
        if user_id is None:
            raise Unauthenticated("unknown or expired session: log in again")
        user = repo_people.get_user(tx, user_id)
        return Caller(user.user_id, user.email)


CallerDep = Annotated[Caller, Depends(get_caller)]


class Paging:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=1000, description="items per page")] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset


PageDep = Annotated[Paging, Depends(Paging)]


def envelope(data: T, **meta: Any) -> Envelope[T]:
    return Envelope[T](data=data, meta=meta)


def paged(items: Sequence[T], paging: Paging, total: int | None = None) -> Envelope[list[T]]:
    """A page of ``items`` (all of them when ``total`` is None; else the page already cut)."""
    if total is None:
        total = len(items)
        items = items[paging.offset : paging.offset + paging.limit]
    page = Page(total=total, limit=paging.limit, offset=paging.offset)
    return Envelope[list[T]](data=list(items), meta={"page": page.model_dump()})
