"""Regenerate the checked-in protobuf modules from ``swarm.proto`` (``make proto`` runs this).

Writes ``swarm_pb2.py``, ``swarm_pb2_grpc.py`` and their ``.pyi`` stubs (mypy-protobuf) next to the proto.
``generate(out_root)`` writes the same files under another root, which is how a test checks that the
checked-in files are current. Needs ``grpcio-tools`` and ``mypy-protobuf`` (dev dependencies).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from swarmrl.errors import SwarmRLError

PROTO_NAME = "swarm.proto"
#: Files produced from the proto, relative to the protocol package directory.
GENERATED = ("swarm_pb2.py", "swarm_pb2.pyi", "swarm_pb2_grpc.py", "swarm_pb2_grpc.pyi")

_PACKAGE_DIR = Path(__file__).resolve().parent
#: The directory that holds the ``swarmrl`` package: protoc runs from here so generated imports are absolute.
_IMPORT_ROOT = _PACKAGE_DIR.parent.parent
_PROTO_REL = Path("swarmrl") / "protocol" / PROTO_NAME


def _plugin(name: str) -> str:
    """Path of a protoc plugin script installed beside the running interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SwarmRLError(f"protoc plugin '{name}' not found; install it with `pip install mypy-protobuf`")
    return found


def generate(out_root: Path) -> list[Path]:
    """Compile the proto into ``out_root/swarmrl/protocol/`` and return the generated paths."""
    try:
        from grpc_tools import protoc
    except ImportError as exc:
        raise SwarmRLError(
            "grpcio-tools is missing; install the dev extras: `pip install -e '.[dev]'`"
        ) from exc
    out_root.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={_IMPORT_ROOT}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        str(_IMPORT_ROOT / _PROTO_REL),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SwarmRLError(f"protoc failed with exit code {code}; see its message above")
    out_dir = out_root / _PROTO_REL.parent
    return [out_dir / name for name in GENERATED]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out-root", type=Path, default=_IMPORT_ROOT, help="directory that holds (or will hold) swarmrl/"
    )
    ns = parser.parse_args(argv)
    for path in generate(ns.out_root):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
