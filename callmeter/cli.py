"""The ``callmeter`` command.

``callmeter run TEST.yaml`` runs a test on Ray (a private local Ray on 127.0.0.1, or the
cluster at ``--address`` / ``RAY_ADDRESS``), stores every metric in DuckDB and prints a
summary; ``callmeter schema`` prints the JSON Schema of test files; ``callmeter worker join``
joins this machine to a cluster as a named, regional worker. ``callmeter demo`` runs the
built-in registrar and a few calls in this process; ``callmeter registrar`` runs the built-in
registrar in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from callmeter import __version__
from callmeter.transport import loop_implementation, run

if TYPE_CHECKING:
    from callmeter.demo import CallReport

__all__ = ["main"]


def _ms(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start) * 1000:.1f}"


def _demo(args: argparse.Namespace, console: Console) -> int:
    from callmeter.callmedia import MediaOptions
    from callmeter.demo import run_demo
    from callmeter.media.impairment import ImpairmentProfile

    media = None
    if not args.no_media:
        impairment = ImpairmentProfile(loss_percent=args.loss) if args.loss else None
        media = MediaOptions(send_impairment=impairment, impairment_seed=args.seed)
    console.print(
        f"callmeter {__version__}: built-in registrar, {2 * args.pairs} endpoints, "
        f"{args.pairs} calls of {args.hold:g} s over {args.transport.upper()} on 127.0.0.1"
        + ("" if media is None else f", G.711 media both ways, {args.loss:g} % loss added")
    )
    report = run(run_demo(args.pairs, args.hold, args.ring, args.transport.upper(), media))
    console.print(
        f"registrar {report.registrar}: {report.registrations_ok} registered, "
        f"{report.registrations_failed} failed (digest auth)"
    )
    console.print(_calls_table(report.calls))
    console.print("all calls answered and ended cleanly" if report.ok else "some calls failed")
    return 0 if report.ok else 1


def _calls_table(calls: Sequence[CallReport]) -> Table:
    table = Table(title="calls through the built-in registrar")
    for column in ("caller", "callee", "result", "status", "100 (ms)", "PDD (ms)",
                   "setup (ms)", "duration (s)", "packets", "lost", "jitter (ms)",
                   "MOS"):  # fmt: skip
        table.add_column(column)
    for call in calls:
        t, q = call.timing, call.quality
        duration = f"{t.duration_s:.2f}" if t is not None and t.duration_s is not None else "-"
        table.add_row(
            call.caller,
            call.callee,
            call.result,
            str(call.status or "-"),
            _ms(t.invite, t.trying) if t else "-",
            _ms(t.invite, t.ringing) if t else "-",
            _ms(t.invite, t.answered) if t else "-",
            duration,
            *(
                (str(q.packets), str(q.lost), f"{q.jitter_ms:.2f}", f"{q.mos:.2f}")
                if q is not None
                else ("-",) * 4
            ),
        )
    return table


def _registrar(args: argparse.Namespace, console: Console) -> int:
    from callmeter.registrar import serve

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        console.print(f"event loop: {loop_implementation()}; Ctrl-C or SIGTERM to stop")
        await serve(
            args.host,
            args.port,
            args.transport,
            args.accounts,
            args.credentials,
            announce=console.print,
            stop=stop,
        )
        console.print("stopped")

    run(main())
    return 0


def _run(args: argparse.Namespace, console: Console) -> int:
    import threading

    from rich.live import Live

    from actors.cluster import disconnect
    from actors.driver import Progress, run_test, summary_json
    from callmeter.models import load_test
    from callmeter.report import progress_panel, summary_table
    from callmeter.store.writer import Store

    test = load_test(args.file)  # a bad file stops here, before anything is created
    screen = Console(stderr=True) if args.json else console
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with Store(args.db) as store, Live(console=screen, auto_refresh=False) as live:

            def show(progress: Progress) -> None:
                live.update(progress_panel(progress), refresh=True)

            result = run_test(
                test, store, address=args.address, on_progress=show, stop=stop,
                shard_capacity=args.shard_capacity, seed=args.seed,
            )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
        disconnect()
    if args.json:
        print(summary_json(result))
    else:
        console.print(summary_table(result.summary, passed=result.passed))
        console.print(f"results: {args.db} (run {result.run_id})")
    return 0 if result.passed else 1


def _schema(args: argparse.Namespace, console: Console) -> int:
    import json

    from callmeter.models import test_json_schema

    print(json.dumps(test_json_schema(), indent=2))
    return 0


def _worker_join(args: argparse.Namespace, console: Console) -> int:
    import os
    import shlex
    import subprocess

    from actors.cluster import LOCAL_ENV, worker_join_command

    command = worker_join_command(
        args.address, args.region, args.name, args.capacity, node_ip=args.node_ip
    )
    console.print("joining: " + shlex.join(command))
    if args.dry_run:
        return 0
    env = {**LOCAL_ENV, **os.environ}
    return subprocess.run(command, env=env, check=False).returncode


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callmeter", description="SIP stress testing and VoIP quality monitoring"
    )
    parser.add_argument("--version", action="version", version=f"callmeter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="registrar + a few calls on this machine")
    demo.add_argument("--pairs", type=int, default=3, help="calls to place (default 3)")
    demo.add_argument("--hold", type=float, default=2.0, help="call duration in s")
    demo.add_argument("--ring", type=float, default=0.3, help="ringing time in s")
    demo.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    demo.add_argument("--no-media", action="store_true", help="signaling only, no RTP")
    demo.add_argument("--loss", type=float, default=0.0, help="%% packet loss added on send")
    demo.add_argument("--seed", type=int, default=1, help="impairment seed (replayable)")
    demo.set_defaults(handler=_demo)

    registrar = commands.add_parser("registrar", help="run the built-in registrar")
    registrar.add_argument("--host", default="127.0.0.1")
    registrar.add_argument("--port", type=int, default=5060)
    registrar.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    registrar.add_argument("--accounts", type=int, default=10, help="ephemeral accounts")
    registrar.add_argument(
        "--credentials", default="callmeter-accounts.csv", help="where to write the accounts"
    )
    registrar.set_defaults(handler=_registrar)

    run_cmd = commands.add_parser("run", help="run a test file on Ray, store every metric")
    run_cmd.add_argument("file", help="the test, as YAML (see examples/)")
    run_cmd.add_argument("--db", default="callmeter.duckdb", help="results database")
    run_cmd.add_argument("--address", default=None, help="Ray cluster (default: RAY_ADDRESS "
                         "or a private local Ray on 127.0.0.1)")  # fmt: skip
    run_cmd.add_argument("--json", action="store_true", help="print the summary as JSON")
    run_cmd.add_argument("--shard-capacity", type=int, default=1000,
                         help="endpoints per shard (one event loop each)")  # fmt: skip
    run_cmd.add_argument("--seed", type=int, default=0, help="randomness seed (replayable)")
    run_cmd.set_defaults(handler=_run)

    schema = commands.add_parser("schema", help="print the JSON Schema of test files")
    schema.set_defaults(handler=_schema)

    worker = commands.add_parser("worker", help="on-premise workers")
    worker_commands = worker.add_subparsers(dest="worker_command", required=True)
    join = worker_commands.add_parser("join", help="join this machine to a Ray cluster")
    join.add_argument("--address", required=True, help="the head, HOST:PORT")
    join.add_argument("--region", default=None, help="region this worker serves")
    join.add_argument("--name", required=True, help="worker name (placement by name)")
    join.add_argument("--capacity", type=int, required=True, help="endpoints it can carry")
    join.add_argument("--node-ip", default=None, help="address to advertise to the cluster")
    join.add_argument("--dry-run", action="store_true", help="print the command only")
    join.set_defaults(handler=_worker_join)

    from callmeter.server.commands import add_platform_commands

    add_platform_commands(commands, launcher_factory=_ray_platform)
    return parser


def _ray_platform(address: str | None, store: Any) -> Any:
    """The Ray launcher and workers of ``callmeter serve`` (imported only when serving)."""
    from actors.launcher import ray_platform

    return ray_platform(address, store)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        code: int = args.handler(args, console)
    except (OSError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
