"""Hostile input against a RUNNING node (a real ``swarm-node run`` process with the libp2p transport).

The test process joins the swarm as peers: an honest one, an attacker that sends crafted envelopes through
a real libp2p transport (signed with its own real key), and a raw py-libp2p host for the two gossip-level
attacks that crashed upstream py-libp2p. Every attack must be dropped and counted under its reason in
``swarmrl_rollouts_rejected_total`` while the node keeps training and keeps accepting the honest peer.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.utils import encode_varint_prefixed

from swarmrl.protocol import swarm_pb2
from swarmrl.swarm.transports.libp2p.transport import topic_for
from tests.integration.swarm_procs import Peer, Proc, cluster, libp2p_addr, valid_group

SWARM = "swarmrl-public"
REJECTED = "swarmrl_rollouts_rejected_total"


async def until(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(cond):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


def gossip_attacks(target: str, done: threading.Event, stop: threading.Event) -> None:
    """A raw libp2p host: a pubsub message with a malformed ``key`` (and a sender id that is no key), then
    a frame on the meshsub protocol that is not protobuf at all (wire type 7 does not exist)."""

    async def main() -> None:
        kp = create_new_key_pair()
        noise = NoiseTransport(kp, noise_privkey=create_x25519_key_pair().private_key)
        host = new_host(key_pair=kp, sec_opt={NOISE_PROTOCOL_ID: noise})
        async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            info = info_from_p2p_addr(multiaddr.Multiaddr(target))
            await host.connect(info)
            bad_key = rpc_pb2.Message(
                data=b"evil",
                topicIDs=[topic_for(SWARM)],
                from_id=bytes([0x12, 0x20]) + hashlib.sha256(b"no key").digest(),
                seqno=os.urandom(8),
                key=b"\x08\x01\x12\x03bad",
                signature=b"\x00" * 64,
            )
            stream = await host.new_stream(info.peer_id, [PROTOCOL_ID_V11])
            await stream.write(encode_varint_prefixed(rpc_pb2.RPC(publish=[bad_key]).SerializeToString()))
            garbage = await host.new_stream(info.peer_id, [PROTOCOL_ID_V11])
            await garbage.write(encode_varint_prefixed(bytes([0x0F]) * 64))
            done.set()
            while not stop.is_set():
                await trio.sleep(0.05)

    trio.run(main)


def forged(data: bytes) -> bytes:
    env = swarm_pb2.Envelope()
    env.ParseFromString(data)
    env.signature = bytes([env.signature[0] ^ 0xFF]) + env.signature[1:]
    return env.SerializeToString()


@pytest.mark.slow
def test_running_node_drops_and_counts_every_attack_and_keeps_going(tmp_path: Path) -> None:
    node_cfg = {
        "swarm": {
            "transport": "libp2p",
            "limits": {"max_envelope_bytes": 8192},
            "rate": {"messages_per_second": 2.0, "burst": 5},
            # no bans, so that each attack is counted under its own reason rather than 'banned'
            "admission": {"ban_threshold": -1e6},
        }
    }
    with cluster(tmp_path) as c:
        node = c.start("victim", node_cfg)
        node.wait_up()
        asyncio.run(asyncio.wait_for(_attack(node), 240))
        assert node.process.poll() is None
        assert node.bad_log_lines() == [], node.bad_log_lines()
        assert node.terminate() == 0


async def _attack(node: Proc) -> None:
    target = libp2p_addr(node)
    good = await Peer([target]).start()
    evil = await Peer([target]).start()
    stop, done = threading.Event(), threading.Event()
    raw = threading.Thread(target=gossip_attacks, args=(target, done, stop), daemon=True)
    try:
        await until(lambda: good.peer_id in {p.peer_id for p in node.control.peers().peers}, 30, "peers")
        await good.send(good.seal([valid_group(11)]))
        await until(lambda: node.accepted_from_id(good.peer_id) == 1, 30, "the honest group before attacks")
        round_before = node.round()

        def rejected(reason: str) -> float:
            return node.metric(REJECTED, f'{{reason="{reason}"}}')

        # gossip level (raw libp2p): both dropped at the pubsub boundary, counted as malformed
        raw.start()
        await until(done.is_set, 30, "the raw host to send")
        await until(lambda: rejected("malformed") >= 2, 30, "gossip-level attacks counted")
        malformed = rejected("malformed")

        async def expect(reason: str, *datas: bytes, at_least: float = 1) -> None:
            base = rejected(reason)
            for data in datas:
                await evil.send(data)
            await until(lambda: rejected(reason) >= base + at_least, 30, f"a '{reason}' rejection")

        await expect("bad_signature", forged(evil.seal([valid_group(21)])))
        replayed = evil.seal([valid_group(22)])
        await expect("replay", replayed, replayed)
        await expect("wrong_swarm", evil.seal([valid_group(23)], swarm_id="another-swarm"))
        big = valid_group(24)
        big.completions[0].text = "9" * 9000
        await expect("oversized", evil.seal([big]))
        await expect("malformed", b"\x0f" * 64)
        assert rejected("malformed") == malformed + 1
        await expect("task_mismatch", evil.seal([valid_group(25, answer="-1")]))
        flood = [evil.seal([valid_group(1000 + i)]) for i in range(20)]
        await expect("rate_limited", *flood, at_least=5)
        assert node.accepted_from_id(evil.peer_id) < 10, "the flood was mostly refused"

        # the node kept training and still accepts the honest peer (and still publishes to it)
        heard = good.events.accepted_groups
        await good.send(good.seal([valid_group(12)]))
        await until(lambda: node.accepted_from_id(good.peer_id) == 2, 30, "the honest group after attacks")
        await until(lambda: node.round() >= round_before + 3, 60, "rounds to advance")
        await until(lambda: good.events.accepted_groups > heard, 30, "the node to keep publishing")
        assert "evil" not in str(node.control.pool().entries)
        totals = {
            r: rejected(r) for r in ("bad_signature", "replay", "wrong_swarm", "oversized", "malformed")
        }
        print(f"rejections: {totals}, rate_limited {rejected('rate_limited')}")
    finally:
        stop.set()
        await good.close()
        await evil.close()
        if raw.is_alive():
            await asyncio.to_thread(raw.join, 10)
