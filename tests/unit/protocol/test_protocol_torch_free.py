"""The swarm and protocol packages must never load torch, transformers, the trainer or the rewards."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("torch", "transformers", "swarmrl.trainer", "swarmrl.rewards", "libp2p", "trio")


def test_swarm_and_protocol_import_without_heavy_modules() -> None:
    code = (
        "import json, sys\n"
        "import swarmrl.protocol, swarmrl.protocol.envelope, swarmrl.protocol.swarm_pb2_grpc\n"
        "import swarmrl.swarm, swarmrl.swarm.service, swarmrl.swarm.transports.grpc, swarmrl.swarm.transports.memory\n"
        "import swarmrl.swarm.identity, swarmrl.swarm.receive, swarmrl.swarm.sampler, swarmrl.swarm.pool\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
