"""Hostile peers, round two, against a RUNNING node on the gRPC transport (a real ``swarm-node run``).

One victim process takes every attack class in turn; an honest in-process peer (real GrpcTransport, real
receive path) keeps trading with it. Each class is checked on its own and collected into ``problems``, so a
run against an older node lists every class it fails, not only the first. At the end the victim must be
alive, advancing rounds, accepting the honest peer's groups, with bounded RSS and fds and no ERROR or
Traceback line in its log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import grpc

from swarmrl.config.swarm import GrpcSection
from swarmrl.node.journal import read_journal
from swarmrl.protocol.types import Completion
from swarmrl.swarm.identity import Identity
from tests.integration.hostile_peers import (
    Attacker,
    GrpcPeer,
    banned,
    connected,
    eventually,
    fd_count,
    longest_log_line,
    rejected,
    rss_mb,
    seal,
    until,
)
from tests.integration.swarm_procs import Proc, cluster, valid_group

_BOUNDED = "idle_timeout_s" in GrpcSection.model_fields
VICTIM: dict[str, Any] = {
    "node": {"checkpoint_every": 5},
    "swarm": {
        "transport": "grpc",
        # the duplicate and flood attacks send batches of 45 groups from one sender: above the bounded-ingress
        # per-sender quota, which would cut them before the checks under test (ingress has its own tests)
        "ingress_groups_per_round": 0,
        "grpc": {
            "handshake_timeout_s": 4.0,
            **({"idle_timeout_s": 5.0, "keepalive_s": 1.0} if _BOUNDED else {}),
        },
    },
}


def grpc_addr(proc: Proc) -> str:
    assert proc.info is not None
    (addr,) = [a for a in proc.info.listen_addrs if "/" not in a]
    return addr


def test_grpc_victim_survives_every_attack_class(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        node = c.start("victim", VICTIM)
        node.wait_up()
        problems: list[str] = asyncio.run(asyncio.wait_for(_attacks(node, tmp_path), 240))
        assert node.process.poll() is None, node.tail()
        bad = node.bad_log_lines()
        if bad:
            problems.append(f"ERROR/Traceback lines in the victim's log: {bad[:3]}")
        assert problems == [], "\n".join(problems)
        assert node.terminate() == 0


async def _attacks(node: Proc, root: Path) -> list[str]:
    problems: list[str] = []
    addr = grpc_addr(node)
    pid = node.process.pid
    good = await GrpcPeer(root, "good", addr).start()
    attackers: list[Attacker] = []

    def attacker() -> Attacker:
        a = Attacker(addr, Identity.generate())
        attackers.append(a)
        return a

    async def honest_group_accepted(index: int, what: str) -> None:
        before = node.accepted_from_id(good.peer_id)
        await good.send([valid_group(index)])
        if not await eventually(lambda: node.accepted_from_id(good.peer_id) > before, 15):
            problems.append(f"{what}: the honest peer's group {index} was not accepted")

    try:
        await until(lambda: connected(node, good.peer_id), 30, "the honest peer to link")
        await honest_group_accepted(11, "start")
        round_before = node.round()
        rss_before = rss_mb(pid)

        # 1. a copy of honest content delivered first must not get the honest sender banned
        copier = attacker()
        call = await copier.link()
        groups = [valid_group(100 + i) for i in range(45)]
        await copier.send(call, seal(copier.ident, groups))
        await until(lambda: node.accepted_from_id(copier.ident.peer_id_text) >= 45, 20, "the copies")
        dups = rejected(node, "duplicate")
        await good.send(groups)
        await until(lambda: rejected(node, "duplicate") >= dups + 45, 20, "the honest copies dropped")
        if banned(node, good.peer_id):
            problems.append("1 duplicate: the honest peer was banned for content an attacker copied")
        await honest_group_accepted(12, "1 duplicate")

        # 2. a recorded Hello of the honest peer, replayed on a new stream, then garbage "from" it
        replayer = attacker()
        call = replayer.open()
        await replayer.send_hello(call, good.captured_hello())
        for _ in range(10):
            if not await Attacker.send(call, b"\x0f" * 64):
                break
        await asyncio.sleep(1.0)  # give a vulnerable node time to charge the garbage
        if banned(node, good.peer_id):
            problems.append("2 hello replay: the honest peer was banned through a replayed Hello")
        await honest_group_accepted(13, "2 hello replay")

        # 3. ~1000 streams on one connection with one identity, then a new honest peer; stalled streams
        crowd = attacker()
        opened = [asyncio.ensure_future(crowd.link()) for _ in range(1030)]
        await asyncio.wait(opened, timeout=20)
        linked = sum(1 for t in opened if t.done() and not t.cancelled() and t.exception() is None)
        newcomer = await GrpcPeer(root, "newcomer", addr).start()
        if not await eventually(lambda: connected(node, newcomer.peer_id), 15):
            problems.append(
                f"3 streams: a new honest peer could not link after {linked} streams on one connection"
            )
        if not await eventually(lambda: not connected(node, crowd.ident.peer_id_text), 15):
            problems.append("3 stalled streams: an attacker's silent streams stayed linked (no read timeout)")
        await crowd.close()
        for t in opened:
            t.cancel()
        await newcomer.close()

        # 5. the victim's own envelope handed back to it
        await until(lambda: len(good.received) > 0, 30, "an envelope from the victim")
        mirror = attacker()
        call = await mirror.link()
        own = rejected(node, "own_envelope")
        await Attacker.send(call, good.received[-1])
        await eventually(
            lambda: rejected(node, "own_envelope") > own or node.accepted_from_id(node.peer_id) > 0, 10
        )
        if node.accepted_from_id(node.peer_id) > 0:
            problems.append("5 own envelope: the victim accepted its own groups as external")

        # 6. one valid envelope replayed by its own signer over its own link
        echo = attacker()
        call = await echo.link()
        data = seal(echo.ident, [valid_group(300)])
        for _ in range(300):
            if not await Attacker.send(call, data):
                break
        if not await eventually(lambda: banned(node, echo.ident.peer_id_text), 10):
            problems.append("6 replays: 300 replays over one link were never penalised")

        # 7. huge TaskRef strings (within the envelope limit)
        stringer = attacker()
        call = await stringer.link()
        limits = rejected(node, "limits")
        for i in range(20):
            g = valid_group(500 + i)
            g.task = dataclasses.replace(g.task, source="s" * 60_000, dataset="d" * 60_000)
            await Attacker.send(call, seal(stringer.ident, [g]))
        await eventually(lambda: rejected(node, "limits") > limits, 10)
        await asyncio.sleep(0.5)
        if longest_log_line(node) > 4096:
            problems.append(
                f"7 strings: a log line of {longest_log_line(node)} chars (TaskRef logged in full)"
            )
        if rejected(node, "limits") <= limits:
            problems.append("7 strings: oversized TaskRef strings were not refused as 'limits'")

        # 8. long external completions (within the character limit) must not stall training: two groups
        # whose completions carry 12,000 characters after a gradable answer, sent when the pool is empty so
        # the next round trains on them (uncut, a step on them takes seconds and a GB of activations)
        await until(lambda: node.control.pool().total == 0, 60, "the pool to drain")
        talker = attacker()
        call = await talker.link()
        t_attack = time.time()
        peak_before = rss_mb(pid, "VmHWM")
        await Attacker.send(call, seal(talker.ident, [long_group(600 + i) for i in range(2)]))
        await until(lambda: node.accepted_from_id(talker.ident.peer_id_text) >= 2, 20, "the long groups")
        await until(
            lambda: not any(e.peer_id == talker.ident.peer_id_text for e in node.control.pool().entries),
            60,
            "the long groups to leave the pool",
        )
        t_drawn = time.monotonic()
        await eventually(lambda: _trained_external(node, t_attack) != [], 60)
        trained = _trained_external(node, t_attack)
        slowest = max((float(r["train_seconds"]) for r in trained), default=0.0)
        peak = rss_mb(pid, "VmHWM") - peak_before
        print(
            f"8: {len(trained)} rounds with external groups, slowest step {slowest:.2f}s, peak +{peak:.0f} MB"
        )
        if not trained:
            problems.append(
                "8 long completions: the round drawing them had not finished "
                f"{time.monotonic() - t_drawn:.0f}s after they left the pool"
            )
        if slowest > 1.5:
            problems.append(f"8 long completions: a training step took {slowest:.1f}s on external groups")
        if peak > 250:
            problems.append(f"8 long completions: peak RSS grew by {peak:.0f} MB training external groups")

        # 11. an envelope over gRPC's message cap
        big = attacker()
        call = await big.link()
        oversized = rejected(node, "oversized")
        await Attacker.send(call, b"\x00" * 2_500_000)
        if not await eventually(lambda: rejected(node, "oversized") > oversized, 10):
            problems.append("11 oversized: an envelope over the gRPC message cap was not counted")

        # 10. many streams cancelled by the client right after the handshake
        canceller = attacker()
        for _ in range(20):
            try:
                call = await canceller.link()
            except (KeyError, grpc.aio.AioRpcError):
                continue  # the victim refused the stream outright (stream and handshake caps): also fine
            call.cancel()
        await asyncio.sleep(0.5)

        # the victim still trains, still accepts the honest peer, stays bounded
        for a in attackers:
            await a.close()
        await honest_group_accepted(14, "end")
        if not await eventually(lambda: node.round() >= round_before + 5, 60):
            problems.append("rounds stopped advancing")
        rss, fds = rss_mb(pid), fd_count(pid)
        print(f"victim rss {rss_before:.0f} -> {rss:.0f} MB, peak {rss_mb(pid, 'VmHWM'):.0f} MB, fds {fds}")
        if rss > rss_before + 300:
            problems.append(f"RSS grew from {rss_before:.0f} to {rss:.0f} MB")
        if fds > 200:
            problems.append(f"{fds} open fds")
    finally:
        for a in attackers:
            await a.close()
        await good.close()
    return problems


def long_group(index: int, chars: int = 12_000) -> Any:
    """A group for task ``index`` whose completions grade as 2 right, 2 wrong (so they carry an advantage
    and enter the loss), each followed by ``chars`` characters of filler (one token each)."""
    g = valid_group(index)
    filler = " " + ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[:chars]
    g.completions = [
        Completion(f"<answer>{a}</answer>{filler}") for a in (g.answer, g.answer, "0", f"{g.answer}1")
    ]
    return g


def _trained_external(node: Proc, since: float) -> list[dict[str, Any]]:
    return [
        r
        for r in read_journal(node.data_dir / "journal.log")
        if r.get("time", 0) >= since and r.get("external_groups", 0) > 0
    ]


def test_thousand_connection_attempts(tmp_path: Path) -> None:
    """Two waves of 1,000 concurrent TCP connections against a victim with ``ulimit -n 1024``: it keeps
    training, keeps writing checkpoints, and a new honest peer that starts dialling between the waves links
    within 15 s."""
    with cluster(tmp_path) as c:
        node = c.start("victim", {"node": {"checkpoint_every": 1}, "swarm": VICTIM["swarm"]}, nofile=1024)
        node.wait_up()
        asyncio.run(asyncio.wait_for(_flood(node, tmp_path), 180))
        assert node.process.poll() is None, node.tail()
        assert node.bad_log_lines() == [], node.bad_log_lines()
        assert node.terminate() == 0


def _checkpoints(node: Proc) -> int:
    d = node.data_dir / "checkpoints"
    return max(
        (int(p.name.split("-")[1]) for p in d.glob("ckpt-*") if p.name.split("-")[1].isdigit()), default=0
    )


async def _flood(node: Proc, root: Path) -> None:
    host, port = grpc_addr(node).rsplit(":", 1)
    pid = node.process.pid
    round0, ckpt0 = node.round(), _checkpoints(node)
    newcomer: GrpcPeer | None = None
    held: list[Any] = []
    try:
        for wave in range(2):
            results = await asyncio.gather(
                *(asyncio.open_connection(host, int(port)) for _ in range(1000)), return_exceptions=True
            )
            held.extend(r for r in results if not isinstance(r, BaseException))
            print(f"wave {wave}: {len(held)} connections open, victim fds {fd_count(pid)}")
            if newcomer is None:
                t0 = time.monotonic()
                newcomer = await GrpcPeer(root, "newcomer", grpc_addr(node)).start()
            assert node.process.poll() is None, node.tail()
        assert newcomer is not None
        await until(
            lambda: connected(node, newcomer.peer_id), max(1.0, 15 - (time.monotonic() - t0)), "a new peer"
        )
        print(
            f"new honest peer linked {time.monotonic() - t0:.1f}s after it started dialling, amid the flood"
        )
        await until(lambda: node.round() >= round0 + 5, 60, "rounds to advance under the flood")
        await until(lambda: _checkpoints(node) >= ckpt0 + 3, 60, "checkpoints to be written under the flood")
        assert fd_count(pid) < 700, fd_count(pid)
    finally:
        for _, writer in held:
            writer.close()
        if newcomer is not None:
            await newcomer.close()
