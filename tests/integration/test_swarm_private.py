"""A private swarm (libp2p pre-shared network key + allowlist) around a RUNNING node process.

Members: the node and an in-process peer with the same key, each on the other's allowlist (the positive
control: they must exchange). Outsiders, both joining through the node's address: one with another network
key, one with the right key but not on the allowlist. Neither may get a single message accepted in either
direction: nothing from them is accepted by the node, and nothing reaches them at all.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from swarmrl.swarm.identity import Identity
from tests.integration.swarm_procs import Peer, Proc, cluster, libp2p_addr, valid_group


async def until(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(cond):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.slow
def test_wrong_network_key_or_not_allowlisted_gets_nothing_either_way(tmp_path: Path) -> None:
    key, other_key = os.urandom(32), os.urandom(32)
    psk_file = tmp_path / "swarm.key"
    psk_file.write_text(f"/key/swarm/psk/1.0.0/\n/base16/\n{key.hex()}\n")
    node_identity = Identity.load_or_create(tmp_path / "member" / "identity.key")
    member = Identity.generate()
    allow = [node_identity.peer_id_text, member.peer_id_text]
    with cluster(tmp_path) as c:
        node = c.start(
            "member",
            {"swarm": {"transport": "libp2p", "psk_file": str(psk_file), "admission": {"allowlist": allow}}},
        )
        info = node.wait_up()
        assert info.peer_id == node_identity.peer_id_text
        asyncio.run(asyncio.wait_for(_exchange(node, key, other_key, member, allow), 180))
        assert node.bad_log_lines() == [], node.bad_log_lines()
        assert node.terminate() == 0


async def _exchange(node: Proc, key: bytes, other_key: bytes, member: Identity, allow: list[str]) -> None:
    target = [libp2p_addr(node)]
    peers = [
        Peer(target, psk=key, allowlist=allow, identity=member),
        Peer(target, psk=other_key),  # wrong network key
        Peer(target, psk=key),  # right key, not on the allowlist
    ]
    # start them together: the wrong-key dial can only time out
    friend, wrong_key, unlisted = await asyncio.gather(*(p.start() for p in peers))
    try:
        for i, peer in enumerate((friend, wrong_key, unlisted)):
            await peer.swarm.publish([valid_group(100 * i + 1), valid_group(100 * i + 2)], 1)
        await until(lambda: node.accepted_from_id(friend.peer_id) == 2, 30, "the member's groups")
        await until(lambda: friend.events.accepted_groups >= 2, 30, "the node's groups at the member")
        # let the outsiders keep trying for a while: more rounds published by every side
        round_0, heard = node.round(), friend.events.accepted_groups
        for r in range(2, 5):
            for i, peer in enumerate((friend, wrong_key, unlisted)):
                await peer.swarm.publish([valid_group(100 * i + 2 * r + 1)], r)
        await until(lambda: node.accepted_from_id(friend.peer_id) == 5, 30, "the member's later groups")
        await until(lambda: node.round() >= round_0 + 10, 60, "ten more node rounds")
        await until(lambda: friend.events.accepted_groups > heard, 30, "the node to keep publishing")

        for outsider in (wrong_key, unlisted):
            assert node.accepted_from_id(outsider.peer_id) == 0
            assert outsider.events.received == 0, "no envelope may even reach an outsider"
            assert outsider.events.accepted_groups == 0
            assert outsider.events.sent >= 4, "the outsider did try to publish"
        connected = {p.peer_id for p in node.control.peers().peers if p.connected}
        assert connected == {friend.peer_id}
        print(
            f"private swarm: member accepted {friend.events.accepted_groups} groups from the node; "
            f"outsiders 0 either way"
        )
    finally:
        for peer in (friend, wrong_key, unlisted):
            await peer.close()
