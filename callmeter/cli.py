"""The ``callmeter`` command.

``callmeter demo`` runs the built-in registrar and a few calls in this process and prints what
happened; ``callmeter registrar`` runs the built-in registrar in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callmeter", description=__doc__.splitlines()[0])
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
    return parser


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
