"""The control plane in-process: node.json (atomic, owned), and the NodeControl gRPC service on loopback
answering from a real Swarm (memory transport, real signatures and receive path) and a real journal."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError, NodeError
from swarmrl.node.control import (
    ControlClient,
    ControlView,
    peers_table,
    resolve_address,
    start_control,
    status_table,
)
from swarmrl.node.journal import Journal
from swarmrl.node.metrics import NodeMetrics
from swarmrl.node.records import rounds_of
from swarmrl.node.runinfo import RunInfo, pid_alive, read_run_info, remove_run_info, write_run_info
from swarmrl.node.swarm_link import build_swarm
from swarmrl.protocol.types import Completion, RolloutGroup
from swarmrl.swarm.identity import Identity
from swarmrl.swarm.service import Swarm
from swarmrl.swarm.transports.memory import MemoryHub
from swarmrl.tasks import build_source
from swarmrl.tasks.registry import regenerate


def test_run_info_round_trip_and_ownership(tmp_path: Path) -> None:
    info = RunInfo(pid=os.getpid(), name="n", metrics_url="http://127.0.0.1:1/metrics", control="127.0.0.1:2")
    path = write_run_info(tmp_path, info)
    assert read_run_info(tmp_path) == info
    assert [p.name for p in tmp_path.iterdir()] == ["node.json"], "no temporary file left behind"
    remove_run_info(tmp_path, pid=os.getpid() + 1)  # someone else's pid: kept
    assert path.exists()
    remove_run_info(tmp_path, pid=os.getpid())
    assert not path.exists()
    with pytest.raises(NodeError, match="swarm-node run --data-dir"):
        read_run_info(tmp_path)
    path.write_text(json.dumps({"pid": "x"}))
    with pytest.raises(NodeError, match=r"not a valid node\.json"):
        read_run_info(tmp_path)
    assert pid_alive(os.getpid()) and not pid_alive(0)


def test_resolve_address(tmp_path: Path) -> None:
    assert resolve_address(None, "127.0.0.1:5") == "127.0.0.1:5"
    with pytest.raises(ConfigError):
        resolve_address(None, "no-port")
    write_run_info(tmp_path, RunInfo(pid=os.getpid(), control="127.0.0.1:7"))
    assert resolve_address(tmp_path, None) == "127.0.0.1:7"
    write_run_info(tmp_path, RunInfo(pid=os.getpid(), control=""))
    with pytest.raises(NodeError, match="control_port"):
        resolve_address(tmp_path, None)
    write_run_info(tmp_path, RunInfo(pid=2**22 + 12345, control="127.0.0.1:7"))
    with pytest.raises(NodeError, match="no longer running"):
        resolve_address(tmp_path, None)


def view(cfg: NodeConfig, data_dir: Path, swarm: Swarm, journal: Journal | None) -> ControlView:
    """The control plane's narrow view of a node (the real Swarm and Journal are used)."""
    return ControlView(
        name=cfg.node.name,
        model="tiny-default",
        transport=cfg.swarm.transport,
        swarm_id=cfg.swarm.swarm_id,
        data_dir=data_dir,
        control_port=cfg.node.control_port,
        swarm=swarm,
        round=lambda: 7,
        policy_version=lambda: 3,
        recent_rounds=lambda: rounds_of(journal.recent) if journal is not None else [],
        metrics_url=lambda: "",
    )


def _group(index: int) -> RolloutGroup:
    task = build_source("arithmetic", "add", {}, 1234, 1_000_000).get(index)
    return RolloutGroup(task.ref, task.question, task.answer, [Completion("1"), Completion(task.answer)])


def test_control_service_answers_from_the_live_swarm(tmp_path: Path) -> None:
    async def main() -> None:
        hub = MemoryHub()
        cfg = NodeConfig.model_validate(
            {"node": {"name": "ctl", "data_dir": str(tmp_path)}, "swarm": {"transport": "memory"}}
        )
        source = build_source("arithmetic", "add", {}, 1234, 1_000_000)
        ids = [Identity.generate() for _ in range(2)]
        swarms = [
            Swarm(cfg, i, hub.transport(i.peer_id_text), lambda ref: regenerate([source], ref), NodeMetrics())
            for i in ids
        ]
        for s in swarms:
            await s.start()
        journal = Journal(tmp_path / "journal.log")
        journal.append({"kind": "round", "round": 1, "reward_mean": 0.5, "modules": {"exact_match": 0.5}})
        journal.append(
            {"kind": "round", "round": 2, "reward_mean": 0.75, "local_groups": 2, "external_groups": 1}
        )
        node = view(cfg, tmp_path, swarms[0], journal)
        plane = await start_control(node)
        try:
            assert plane.address.startswith("127.0.0.1:") and not plane.address.endswith(":0")
            info = read_run_info(tmp_path)
            assert info.control == plane.address and info.peer_id == ids[0].peer_id_text
            await swarms[1].publish([_group(1), _group(2)], 1)
            client = ControlClient(plane.address)
            status = await asyncio.to_thread(client.status)
            assert (status.node, status.round, status.policy_version, status.transport) == (
                "ctl",
                7,
                3,
                "memory",
            )
            assert status.peers_connected == 1 and status.pool_groups == 2
            peers = await asyncio.to_thread(client.peers)
            assert [(p.peer_id, p.connected, p.accepted_groups) for p in peers.peers] == [
                (ids[1].peer_id_text, True, 2)
            ]
            pool = await asyncio.to_thread(client.pool, 1)
            assert pool.total == 2 and len(pool.entries) == 1 and pool.entries[0].completions == 2
            rewards = await asyncio.to_thread(client.recent_rewards, 1)
            assert [(r.round, r.mean, r.external_groups) for r in rewards.rounds] == [(2, 0.75, 1)]
            assert status_table(status).row_count == 10 and peers_table(peers).row_count == 1
        finally:
            await plane.close()
            journal.close()
            for s in swarms:
                await s.close()
        assert not (tmp_path / "node.json").exists()
        with pytest.raises(NodeError, match="did not answer"):
            await asyncio.to_thread(ControlClient(plane.address, timeout_s=1).status)

    asyncio.run(main())


def test_control_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = NodeConfig.model_validate({"node": {"data_dir": str(tmp_path)}})
        alone = build_swarm(cfg, tmp_path, lambda ref: regenerate([], ref), NodeMetrics())
        first = await start_control(view(cfg, tmp_path, alone, None))
        port = int(first.address.rsplit(":", 1)[1])
        busy = view(
            cfg.model_copy(update={"node": cfg.node.model_copy(update={"control_port": port})}),
            tmp_path,
            alone,
            None,
        )
        try:
            with pytest.raises(NodeError, match="control_port"):
                await start_control(busy)
        finally:
            await first.close()

    asyncio.run(main())
