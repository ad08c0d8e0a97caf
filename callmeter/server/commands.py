"""The platform's commands: ``callmeter serve``, ``login``, ``tests run`` and ``runs show``.

``add_platform_commands(commands)`` adds them to the ``callmeter`` parser; each handler is
``handler(args, console) -> exit code`` like the others in :mod:`callmeter.cli`. ``serve``
takes an optional ``launcher_factory(address) -> (RunLauncher, WorkerSource)``: the Ray side
(``actors/``) provides it. The client commands talk to the server through
:class:`callmeter.client.Client`; the CI gate is ``callmeter tests run NAME --wait
--fail-under mos=4.0`` (exit 1 when the run fails or misses a threshold).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from callmeter.client import Client
    from callmeter.server.queue import RunLauncher
    from callmeter.server.workers import WorkerSource
    from callmeter.store import Store

__all__ = ["LauncherFactory", "add_platform_commands"]

LauncherFactory = Callable[[str | None, "Store"], "tuple[RunLauncher, WorkerSource]"]
Subparsers = Any  # argparse._SubParsersAction: private in typeshed


def add_platform_commands(
    commands: Subparsers, *, launcher_factory: LauncherFactory | None = None
) -> None:
    """Add ``serve``, ``login``, ``tests`` and ``runs`` to the ``callmeter`` subcommands."""
    serve = commands.add_parser("serve", help="the platform: REST API, run queue, one database")
    serve.add_argument("--db", default="callmeter.duckdb", help="the database file it owns")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    serve.add_argument(
        "--owner-email", default=None, help="first Owner (env CALLMETER_OWNER_EMAIL)"
    )
    serve.add_argument(
        "--owner-password",
        default=None,
        help="first Owner's password (env CALLMETER_OWNER_PASSWORD)",
    )
    serve.add_argument("--public-url", default=None, help="URL in invitation links")
    serve.set_defaults(handler=_serve_with(launcher_factory))

    login = commands.add_parser("login", help="log in to a callmeter server")
    login.add_argument("--server", default=None, help="server URL (env CALLMETER_URL)")
    login.add_argument("--email", required=True)
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.set_defaults(handler=_login)

    tests = commands.add_parser("tests", help="tests stored on the server")
    tests_commands = tests.add_subparsers(dest="tests_command", required=True)
    run = tests_commands.add_parser("run", help="run a stored test (the CI gate)")
    run.add_argument("name", help="the test's name")
    run.add_argument("--project", default=None, help="project id or slug")
    run.add_argument("--wait", action="store_true", help="wait until the run ends")
    run.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    run.add_argument("--poll", type=float, default=2.0, help="seconds between status checks")
    run.add_argument(
        "--fail-under",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fail when a summary value is below (e.g. mos=4.0); implies --wait",
    )
    run.add_argument(
        "--fail-over",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fail when a summary value is above (e.g. jitter=30); implies --wait",
    )
    run.set_defaults(handler=_tests_run)

    runs = commands.add_parser("runs", help="test runs on the server")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    show = runs_commands.add_parser("show", help="a run's status and results")
    show.add_argument("run_id")
    show.set_defaults(handler=_runs_show)
    stop = runs_commands.add_parser("stop", help="stop a run")
    stop.add_argument("run_id")
    stop.set_defaults(handler=_runs_stop)


def _serve_with(factory: LauncherFactory | None) -> Callable[[argparse.Namespace, Console], int]:
    def handler(args: argparse.Namespace, console: Console) -> int:
        from callmeter.server.app import serve

        def bound(store: Store) -> tuple[RunLauncher, WorkerSource]:
            assert factory is not None
            return factory(args.address, store)

        serve(
            args.db, args.host, args.port,
            owner_email=args.owner_email, owner_password=args.owner_password,
            public_url=args.public_url, announce=console.print,
            launcher_factory=bound if factory is not None else None,
        )  # fmt: skip
        return 0

    return handler


def _client(args: argparse.Namespace) -> Client:
    from callmeter.client import Client

    return Client.from_environment(base_url=getattr(args, "server", None))


def _api_errors(handler: Callable[[argparse.Namespace, Console], int]) -> Any:
    def wrapped(args: argparse.Namespace, console: Console) -> int:
        import httpx

        from callmeter.client import ApiError

        try:
            return handler(args, console)
        except httpx.TransportError as error:
            console.print(f"[red]error:[/red] cannot reach the server: {error}")
            return 2
        except ApiError as error:
            console.print(f"[red]error:[/red] {error.message} ({error.status})")
            return 2
        except (LookupError, TimeoutError) as error:
            console.print(f"[red]error:[/red] {error.args[0] if error.args else error}")
            return 2

    wrapped.__doc__ = handler.__doc__
    return wrapped


@_api_errors
def _login(args: argparse.Namespace, console: Console) -> int:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass()
    with _client(args) as client:
        session = client.login(args.email, password)
        path = client.save_credentials()
    console.print(f"logged in to {client.base_url} as {session.user.email} (saved in {path})")
    return 0


@_api_errors
def _tests_run(args: argparse.Namespace, console: Console) -> int:
    from callmeter.client import Threshold, check_thresholds

    thresholds = [Threshold.parse(t, "under") for t in args.fail_under]
    thresholds += [Threshold.parse(t, "over") for t in args.fail_over]
    with _client(args) as client:
        test = client.find_test(args.name, args.project)
        run = client.run_test(test.test_id)
        console.print(f"run {run.run_id} of test {test.name}: {run.status}")
        if not (args.wait or thresholds):
            return 0
        run = client.wait(run.run_id, timeout_s=args.timeout, poll_s=args.poll)
        summary = client.summary(run.run_id)
    console.print(_summary_table(run.run_id, run.status, run.reason, summary))
    if run.status != "COMPLETED":
        console.print(f"[red]run {run.status}[/red]: {run.reason or ''}")
        return 1
    missed = check_thresholds(summary, thresholds)
    for line in missed:
        console.print(f"[red]missed[/red] {line}")
    return 1 if missed else 0


@_api_errors
def _runs_show(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as client:
        run = client.run(args.run_id)
        summary = client.summary(run.run_id) if run.started_at is not None else {}
    console.print(_summary_table(run.run_id, run.status, run.reason, summary))
    return 0


@_api_errors
def _runs_stop(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as client:
        run = client.stop_run(args.run_id)
    console.print(f"run {run.run_id}: {run.status} ({run.reason or ''})")
    return 0


_SHOWN = ("test_name", "status", "reason", "endpoints", "duration_s", "calls_attempted",
          "calls_successful", "success_rate", "mos_avg", "mos_p5", "jitter_ms_avg",
          "loss_pct_avg", "rtt_ms_avg", "setup_ms_p50", "setup_ms_p95", "pdd_ms_p50")  # fmt: skip


def _summary_table(run_id: str, status: str, reason: str | None, summary: dict[str, Any]) -> Table:
    table = Table(title=f"run {run_id}")
    table.add_column("value")
    table.add_column("")
    merged = {
        "status": status,
        "reason": reason,
        **{k: v for k, v in summary.items() if v is not None},
    }
    for key in _SHOWN:
        value = merged.get(key)
        if value is not None:
            table.add_row(key, f"{value:.3g}" if isinstance(value, float) else str(value))
    outcomes = summary.get("outcomes") or {}
    if outcomes:
        table.add_row("outcomes", ", ".join(f"{k} {v}" for k, v in outcomes.items()))
    return table
