"""Compile the per-packet media path with mypyc; all metadata is in pyproject.toml.

``callmeter/_compiled.py`` lists the modules and says why. ``CALLMETER_PURE=1`` at
install time skips compilation: a pure Python install. It also removes the extensions an earlier
editable install left beside the sources, which would otherwise still shadow them.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PACKAGE = Path("callmeter")
COMPILED: tuple[str, ...] = runpy.run_path(str(PACKAGE / "_compiled.py"))["COMPILED_MODULES"]
SOURCES = [PACKAGE.joinpath(*name.split(".")) for name in COMPILED]  # without the suffix
# One shared library holds the compiled code (each module's extension is a shim into it):
# top-level, where mypyc expects it (it derives the modules' __file__ from its path), and
# named rather than hashed, so a rebuild replaces it.
GROUP = "callmeter_compiled"


class StampedBuildExt(build_ext):
    """Stamp in-place extensions with the build time: the stale guard compares it with the
    sources' (a build that finds nothing to recompile would otherwise leave an old time)."""

    def run(self) -> None:
        super().run()
        if self.inplace:
            for ext in self.extensions:
                os.utime(self.get_ext_fullpath(ext.name))


def remove_inplace_extensions() -> None:
    """Delete what an editable install built beside the sources: it would shadow them."""
    for pattern in (*(f"{source}.*.so" for source in SOURCES), "*__mypyc.*.so"):
        for path in Path().glob(pattern):
            path.unlink()


def metadata_only() -> bool:
    """Whether this run only writes metadata: pip runs setup.py to ask what the build needs
    (egg_info) and for the metadata (dist_info) before it builds, and generating the C code
    takes ~10 s each time."""
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    return command in {"egg_info", "dist_info"}


def extensions() -> list[Extension]:
    if os.environ.get("CALLMETER_PURE") == "1":
        remove_inplace_extensions()
        return []
    if metadata_only():
        return []
    from mypyc.build import mypycify

    return mypycify([f"{source}.py" for source in SOURCES], opt_level="3", group_name=GROUP)


setup(ext_modules=extensions(), cmdclass={"build_ext": StampedBuildExt})
