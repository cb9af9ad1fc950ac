"""Print the runtime requirements declared in pyproject.toml, one per line, for a cacheable deps layer.

The Docker build installs these before it copies the source tree, so editing code does not invalidate the
(large) dependency layer. torch is left out by default because the image installs it first from the index
that matches the variant (CPU wheels or CUDA wheels).

Usage: python pyproject_deps.py PYPROJECT [--extra NAME ...] [--keep-torch]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(spec: str) -> str:
    """The normalized distribution name of a PEP 508 requirement ('Torch>=2' -> 'torch')."""
    match = _NAME.match(spec)
    if match is None:
        raise ValueError(f"not a requirement: {spec!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def runtime_requirements(pyproject: Path, extras: list[str], keep_torch: bool = False) -> list[str]:
    """The project's dependencies plus the named optional-dependency groups, in declaration order."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    specs: list[str] = list(project.get("dependencies", []))
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; pyproject.toml defines {sorted(optional)}")
        specs.extend(optional[extra])
    out: list[str] = []
    for spec in specs:
        if (keep_torch or requirement_name(spec) != "torch") and spec not in out:
            out.append(spec)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--extra", action="append", default=[], help="optional-dependency group to add")
    parser.add_argument("--keep-torch", action="store_true", help="also print the torch requirement")
    args = parser.parse_args(argv)
    for spec in runtime_requirements(args.pyproject, args.extra, args.keep_torch):
        print(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
