"""Status pages: managed in the API like any project resource (Viewer reads, Editor edits),
and published as plain HTML at ``/status/<slug>`` for anyone, without logging in.

The public page shows what :mod:`callmeter.probes.status_page` lists and nothing else; an
unknown slug is a plain 404 page that says no more than that.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.responses import HTMLResponse

from callmeter.probes import repo
from callmeter.probes.models import StatusPageIn, StatusPageOut, StatusPageUpdate
from callmeter.probes.status_page import CONTENT_SECURITY_POLICY, build_view, render
from callmeter.server.access import Action
from callmeter.server.deps import CallerDep, PageDep, PlatformDep, envelope, paged
from callmeter.server.payloads import Envelope
from callmeter.server.routes.probes import check_access

__all__ = ["public_router", "router"]

router = APIRouter(tags=["status pages"])
public_router = APIRouter(tags=["public status pages"])

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "public, max-age=30",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_NOT_FOUND = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Not found</title>'
    '</head><body style="font-family:system-ui,sans-serif;margin:40px">'
    "<h1>No such status page</h1></body></html>"
)


@router.get("/projects/{project_id}/status-pages", response_model=Envelope[list[StatusPageOut]])
def list_status_pages(
    project_id: str, platform: PlatformDep, caller: CallerDep, paging: PageDep
) -> Envelope[list[StatusPageOut]]:
    with platform.db.transaction() as tx:
        caller.in_project(tx, project_id, Action.READ)
        return paged(repo.list_status_pages(tx, project_id, platform.public_url), paging)


@router.post(
    "/projects/{project_id}/status-pages", status_code=201, response_model=Envelope[StatusPageOut]
)
def create_status_page(
    project_id: str, body: StatusPageIn, platform: PlatformDep, caller: CallerDep
) -> Envelope[StatusPageOut]:
    """A public status page over some of the project's probes; ``slug`` is its address,
    ``/status/<slug>``, unique on this server. Each component shows its ``display_name``
    (default: the probe's name) and nothing else of the probe."""
    with platform.db.transaction() as tx:
        owner = caller.in_project(tx, project_id, Action.EDIT_RESOURCES)
        page = repo.create_status_page(
            tx, owner, body.name, body.slug, body.description, body.components,
            platform.clock(), platform.public_url,
        )  # fmt: skip
    return envelope(page)


@router.get("/status-pages/{status_page_id}", response_model=Envelope[StatusPageOut])
def get_status_page(
    status_page_id: str, platform: PlatformDep, caller: CallerDep
) -> Envelope[StatusPageOut]:
    with platform.db.transaction() as tx:
        check_access(tx, caller, "status page", status_page_id, Action.READ)
        return envelope(repo.get_status_page(tx, status_page_id, platform.public_url))


@router.patch("/status-pages/{status_page_id}", response_model=Envelope[StatusPageOut])
def update_status_page(
    status_page_id: str, body: StatusPageUpdate, platform: PlatformDep, caller: CallerDep
) -> Envelope[StatusPageOut]:
    """Change the name, slug, description or components (the list given replaces all)."""
    with platform.db.transaction() as tx:
        check_access(tx, caller, "status page", status_page_id, Action.EDIT_RESOURCES)
        return envelope(
            repo.update_status_page(
                tx, status_page_id, body.model_dump(exclude_unset=True), platform.clock(),
                platform.public_url,
            )
        )  # fmt: skip


@router.delete("/status-pages/{status_page_id}", status_code=204)
def delete_status_page(status_page_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    with platform.db.transaction() as tx:
        check_access(tx, caller, "status page", status_page_id, Action.EDIT_RESOURCES)
        repo.delete_status_page(tx, status_page_id)
    return Response(status_code=204)


@public_router.get("/status/{slug}", response_class=HTMLResponse, include_in_schema=False)
def public_status_page(
    slug: Annotated[str, Path(max_length=64)], platform: PlatformDep
) -> HTMLResponse:
    """The public page: no login, HTML only."""
    with platform.db.transaction() as tx:
        page = repo.status_page_by_slug(tx, slug, platform.public_url)
        if page is None:
            return HTMLResponse(_NOT_FOUND, status_code=404, headers=_HEADERS)
        view = build_view(tx, page, platform.clock())
    return HTMLResponse(render(view), headers=_HEADERS)
