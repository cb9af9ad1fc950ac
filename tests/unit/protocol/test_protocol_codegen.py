"""The checked-in generated protobuf modules are exactly what `make proto` produces from swarm.proto."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmrl.protocol import codegen

PROTOCOL_DIR = Path(codegen.__file__).resolve().parent


def test_generated_files_are_current(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    generated = codegen.generate(tmp_path)
    assert [p.name for p in generated] == list(codegen.GENERATED)
    for path in generated:
        checked_in = PROTOCOL_DIR / path.name
        assert checked_in.read_bytes() == path.read_bytes(), (
            f"{checked_in.name} is stale: run `make proto` (python -m swarmrl.protocol.codegen)"
        )


def test_every_proto_field_is_commented() -> None:
    lines = (PROTOCOL_DIR / codegen.PROTO_NAME).read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        is_field = stripped.endswith(";") and "=" in stripped and not stripped.startswith(("//", "syntax"))
        is_rpc = stripped.startswith("rpc ")
        if is_field or is_rpc:
            assert lines[i - 1].strip().startswith("//"), f"line {i + 1} has no comment: {stripped}"
