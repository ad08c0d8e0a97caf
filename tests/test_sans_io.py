"""The SIP core is sans-I/O: it never imports a module that touches sockets, clocks or
event loops (STYLE.md principle 1). Checked on the source, so a lazy import counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import callmeter.media
import callmeter.sip

FORBIDDEN = {"asyncio", "socket", "time", "selectors", "threading", "ray", "duckdb",
             "streamlit", "uvloop", "subprocess"}  # fmt: skip
CORE = sorted(
    path
    for package in (callmeter.sip, callmeter.media)
    for path in Path(package.__file__).parent.glob("*.py")
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_core_has_modules_to_check() -> None:
    names = {p.name for p in CORE}
    assert names >= {"message.py", "transaction.py", "useragent.py", "auth.py", "sdp.py"}


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_module_imports_no_io(path: Path) -> None:
    assert imported_modules(path) & FORBIDDEN == set()


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import time\n    from asyncio import sleep\n")
    assert imported_modules(sample) & FORBIDDEN == {"time", "asyncio"}
