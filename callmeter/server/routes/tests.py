"""Tests (reusable configurations with their groups) and the runs triggered from them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from callmeter.server import repo_resources, repo_runs, runs
from callmeter.server.access import Action
from callmeter.server.deps import CallerDep, PageDep, PlatformDep, envelope, paged
from callmeter.server.errors import NotFound
from callmeter.server.payloads import Envelope, RunIn, RunOut, TestIn, TestOut, TestUpdate

__all__ = ["router"]

router = APIRouter(tags=["tests"])


@router.get("/projects/{project_id}/tests", response_model=Envelope[list[TestOut]])
def list_tests(
    project_id: str,
    platform: PlatformDep,
    caller: CallerDep,
    paging: PageDep,
    name: Annotated[str | None, Query(max_length=200, description="only the test so named")] = None,
) -> Envelope[list[TestOut]]:
    with platform.db.transaction() as tx:
        caller.in_project(tx, project_id, Action.READ)
        return paged(repo_resources.list_tests(tx, project_id, name), paging)


@router.post("/projects/{project_id}/tests", status_code=201, response_model=Envelope[TestOut])
def create_test(
    project_id: str, body: TestIn, platform: PlatformDep, caller: CallerDep
) -> Envelope[TestOut]:
    """Save a test. Its ``definition`` is a test file's content (``groups``, ``call_duration_s``
    ...); registrars and media files are the project's, named. A bad definition is a 400
    naming the field: ``definition: groups[1].target.group: no group named "x"``."""
    now = platform.clock()
    with platform.db.transaction() as tx:
        owner = caller.in_project(tx, project_id, Action.EDIT_RESOURCES)
        runs.load_test(
            tx, platform.media_dir, project_id, body.name, body.definition, for_run=False
        )
        test = repo_resources.create_test(
            tx, owner, body.name, body.description, body.definition, now
        )
    return envelope(test)


@router.get("/tests/{test_id}", response_model=Envelope[TestOut])
def get_test(test_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[TestOut]:
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "test", test_id, Action.READ)
        return envelope(repo_resources.get_test(tx, test_id))


@router.patch("/tests/{test_id}", response_model=Envelope[TestOut])
def update_test(
    test_id: str, body: TestUpdate, platform: PlatformDep, caller: CallerDep
) -> Envelope[TestOut]:
    with platform.db.transaction() as tx:
        owner = caller.on_resource(tx, "test", test_id, Action.EDIT_RESOURCES)
        current = repo_resources.get_test(tx, test_id)
        name = body.name or current.name
        definition = current.definition if body.definition is None else body.definition
        runs.load_test(tx, platform.media_dir, owner.project_id, name, definition, for_run=False)
        return envelope(
            repo_resources.update_test(
                tx, test_id, body.name, body.description, body.definition, platform.clock()
            )
        )


@router.delete("/tests/{test_id}", status_code=204)
def delete_test(test_id: str, platform: PlatformDep, caller: CallerDep) -> Response:
    """Delete a test; its runs and their results stay."""
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "test", test_id, Action.EDIT_RESOURCES)
        repo_resources.delete_resource(tx, "test", test_id)
    return Response(status_code=204)


@router.post("/tests/{test_id}/runs", status_code=201, response_model=Envelope[RunOut])
def trigger_run(
    test_id: str, platform: PlatformDep, caller: CallerDep, body: RunIn | None = None
) -> Envelope[RunOut]:
    """Run the test: the run is QUEUED and starts when the plan and the workers have room
    (else CANNOT_RUN_FOR_NOW with the reason, retried by itself). A test the plan can never
    run is refused (409 ``plan_limit``)."""
    with platform.db.transaction() as tx:
        owner = caller.on_resource(tx, "test", test_id, Action.RUN_TEST)
    return envelope(runs.trigger(platform, caller, test_id, owner))


@router.get("/projects/{project_id}/runs", response_model=Envelope[list[RunOut]])
def list_runs(
    project_id: str,
    platform: PlatformDep,
    caller: CallerDep,
    paging: PageDep,
    test_id: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=40)] = None,
) -> Envelope[list[RunOut]]:
    """The project's runs, newest first."""
    with platform.db.transaction() as tx:
        caller.in_project(tx, project_id, Action.READ)
        found, total = repo_runs.list_runs(
            tx, project_id, test_id=test_id, status=status, limit=paging.limit,
            offset=paging.offset,
        )  # fmt: skip
    return paged(found, paging, total)


@router.get("/runs/{run_id}", response_model=Envelope[RunOut])
def get_run(run_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[RunOut]:
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "run", run_id, Action.READ)
        run = repo_runs.get_run(tx, run_id)
    if run is None:
        raise NotFound.of("run", run_id)
    return envelope(run)


@router.post("/runs/{run_id}/stop", response_model=Envelope[RunOut])
def stop_run(run_id: str, platform: PlatformDep, caller: CallerDep) -> Envelope[RunOut]:
    """Stop a run: a waiting one is cancelled (FAILED), a running one goes STOPPING and then
    COMPLETED with what it measured. 409 when it already ended."""
    with platform.db.transaction() as tx:
        caller.on_resource(tx, "run", run_id, Action.STOP_RUN)
    platform.queue.stop(run_id, caller.label)
    with platform.db.transaction() as tx:
        run = repo_runs.get_run(tx, run_id)
    if run is None:
        raise NotFound.of("run", run_id)
    return envelope(run)
