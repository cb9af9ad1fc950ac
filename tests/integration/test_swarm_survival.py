"""The node survives its swarm: when the transport is gone, publishing logs once and returns (the round
loop trains alone) instead of raising out of the round."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.integration.swarm_procs import Peer, valid_group


def test_publish_on_a_dead_transport_logs_once_and_returns(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        peer = await Peer([]).start()
        assert await peer.swarm.publish([valid_group(1)], 1) == 1
        await peer.transport.close()  # the transport dies under the node
        with caplog.at_level(logging.WARNING, logger="swarmrl.swarm.service"):
            assert await peer.swarm.publish([valid_group(2)], 2) == 0
            assert await peer.swarm.publish([valid_group(3)], 3) == 0
        await peer.close()

    asyncio.run(asyncio.wait_for(main(), 60))
    failures = [r for r in caplog.records if "training alone" in r.getMessage()]
    assert len(failures) == 1
