"""Which modules mypyc compiles, and the import-time guard against stale extensions.

The per-packet path (RTP in and out, receive statistics, the jitter buffer model, RTCP, the
E-model, impairment) costs 2-3x less CPU per packet compiled, and the media shell that moves
the packets (the ticker, the shared media port, batched I/O) another 15 % of what is left,
so ``setup.py`` compiles these modules with mypyc unless ``CALLMETER_PURE=1``. It reads
``COMPILED_MODULES`` from this file without importing the package: keep it stdlib only, with
nothing run at import.

An editable install builds each extension beside its source, where it shadows the ``.py``: after
an edit to ``session.py`` without a rebuild the old compiled code would run, silently. The
build stamps the extensions with the build time, and ``check_fresh`` (which
``callmeter/__init__`` calls before any of them can be imported) raises ImportError when a
source is newer than its extension, unless ``CALLMETER_ALLOW_STALE=1``. It costs a few
``stat`` calls. It looks only in a source checkout (``pyproject.toml`` one level up): a wheel
install writes its files in an arbitrary order, so there a source may be a few microseconds
newer than its extension, and nobody edits it.

Pickling. mypyc's ``__setstate__`` restores a frozen dataclass through ``setattr``, which the
dataclass refuses (``FrozenInstanceError``), yet Ray ships ``ImpairmentProfile`` and friends to
its actors. ``pickle_frozen_dataclasses`` registers (``copyreg``, which pickle, copy and Ray's
cloudpickle all consult) a reducer that rebuilds them through ``__init__`` instead, compiled or
not, for every frozen dataclass the compiled modules define (each package registers its own,
from its ``__init__``, once its modules are imported).
"""

from __future__ import annotations

import copyreg
import dataclasses
import importlib
import os
from collections.abc import Callable
from importlib.machinery import EXTENSION_SUFFIXES
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "COMPILED_MODULES",
    "check_fresh",
    "frozen_dataclasses",
    "pickle_frozen_dataclasses",
    "stale_modules",
]

COMPILED_MODULES: tuple[str, ...] = (
    "media.impairment",
    "media.jitterbuffer",
    "media.quality",
    "media.rtcp",
    "media.rtp",
    "media.rtpstats",
    "media.session",
    "transport.batch",
    "transport.media",
    "transport.mediaport",
)
"""Modules of the ``callmeter`` package, by their dotted path under it."""

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _mtime_ns(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def stale_modules(package_dir: str = PACKAGE_DIR) -> list[str]:
    """Compiled modules whose extension in ``package_dir`` is older than their source.

    Empty outside a source checkout, and for modules without an extension (a pure install)."""
    if not os.path.exists(os.path.join(package_dir, os.pardir, "pyproject.toml")):
        return []
    stale = []
    for name in COMPILED_MODULES:
        base = os.path.join(package_dir, *name.split("."))
        for suffix in EXTENSION_SUFFIXES:  # the order the import system tries them in
            built = _mtime_ns(base + suffix)
            if built is not None:
                source = _mtime_ns(base + ".py")
                if source is not None and source > built:
                    stale.append(name)
                break
    return stale


def check_fresh(package_dir: str = PACKAGE_DIR) -> None:
    """Raise ImportError naming every stale compiled module, unless ``CALLMETER_ALLOW_STALE=1``."""
    if os.environ.get("CALLMETER_ALLOW_STALE") == "1":
        return
    stale = stale_modules(package_dir)
    if stale:
        names = ", ".join(f"callmeter.{name}" for name in stale)
        raise ImportError(
            f"{names}: the compiled extension is older than the source, so the old code would "
            "run; rebuild with `make install` (or `pip install -e .`), or set "
            "CALLMETER_ALLOW_STALE=1 to run it anyway"
        )


def frozen_dataclasses(package: str | None = None) -> list[type[Any]]:
    """Every frozen dataclass defined in a compiled module (which this imports), or in those of
    ``package`` (``"media"``, ``"transport"``)."""
    found = []
    for name in COMPILED_MODULES:
        if package is not None and not name.startswith(package + "."):
            continue
        module = importlib.import_module(f"{__package__}.{name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == module.__name__
                and dataclasses.is_dataclass(value)
                and getattr(value, "__dataclass_params__").frozen  # noqa: B009  (not in the stubs)
            ):
                found.append(value)
    return found


def _rebuild(cls: type[Any], fields: dict[str, object]) -> object:
    return cls(**fields)


def _reduce(
    instance: DataclassInstance,
) -> tuple[Callable[[type[Any], dict[str, object]], object], tuple[type[Any], dict[str, object]]]:
    fields = {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance) if f.init}
    return _rebuild, (type(instance), fields)


def pickle_frozen_dataclasses(package: str | None = None) -> None:
    """Make the compiled frozen dataclasses (of ``package``) picklable (see the top)."""
    for cls in frozen_dataclasses(package):
        copyreg.pickle(cls, _reduce)
