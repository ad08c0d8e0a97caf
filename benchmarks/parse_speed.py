"""Microseconds per ``parse_message`` and per ``serialize`` for a few real SIP messages.

    python benchmarks/parse_speed.py                    # this checkout
    python benchmarks/parse_speed.py --against a8ba1ef  # and the parser of that commit too

Messages: the SIPp-style seeds of ``tests/sip_samples.py``, captured peer bytes under
``tests/data/**/*.sip`` when present, and a few RFC 4475 messages (``shared/`` beside the
repository). Each figure is the best of ``--repeat`` timeit runs, so a stall of the VM does
not count. This is a benchmark script, not a test: it prints figures and asserts nothing about
time. The load generator needs a typical INVITE parsed well under 30 us.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import timeit
from functools import partial
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.sip_samples import RFC4475_DIR, SAMPLES, captured_messages  # noqa: E402

RFC4475_PICKS = ("wsinv", "esc01", "mpart01", "longreq", "unreason")
SIP_MODULES = ("errors", "uri", "headers", "message")


def messages() -> dict[str, bytes]:
    picked = dict(SAMPLES)
    picked.update(captured_messages())
    for name in RFC4475_PICKS:
        path = RFC4475_DIR / f"{name}.sip"
        if path.exists():
            picked[f"rfc4475-{name}"] = path.read_bytes()
    return picked


def load_revision(revision: str, into: Path) -> ModuleType:
    """Import ``callmeter.sip.message`` as it is at ``revision``, as package ``baseline``."""
    package = into / "baseline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in SIP_MODULES:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:callmeter/sip/{name}.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (package / f"{name}.py").write_text(source.replace("callmeter.sip.", "baseline."))
    sys.path.insert(0, str(into))
    return importlib.import_module("baseline.message")


def best_us(func: object, number: int, repeat: int) -> float:
    runs = timeit.repeat(func, number=number, repeat=repeat)  # type: ignore[arg-type]
    return min(runs) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--against", metavar="REV", help="also time the parser at this git revision"
    )
    parser.add_argument("--number", type=int, default=2000, help="calls per timeit run")
    parser.add_argument("--repeat", type=int, default=5, help="timeit runs (the best one counts)")
    args = parser.parse_args()

    from callmeter.sip import message as current

    implementations = {"current": current}
    with tempfile.TemporaryDirectory() as tmp:
        if args.against:
            implementations[args.against] = load_revision(args.against, Path(tmp))
        header = f"{'message':28} {'bytes':>6}"
        for label in implementations:
            header += f" {label + ' parse':>16} {label + ' serialize':>20}"
        print(header + "   (us per call, best of runs)")
        for name, data in messages().items():
            row = f"{name:28} {len(data):6}"
            for module in implementations.values():
                try:
                    parsed = module.parse_message(data)
                except ValueError as exc:  # an older parser may reject what this one accepts
                    row += f" {'rejected':>16} {'':>20}  ({str(exc)[:40]})"
                    continue
                parse = best_us(partial(module.parse_message, data), args.number, args.repeat)
                serialize = best_us(parsed.serialize, args.number, args.repeat)
                row += f" {parse:16.1f} {serialize:20.1f}"
            print(row)


if __name__ == "__main__":
    main()
