"""The libp2p peer cache file: round trip, atomic rewrite, corrupt input, capacity."""

from __future__ import annotations

import json
from pathlib import Path

from swarmrl.swarm.transports.libp2p.peercache import PeerCache

ADDR = "/ip4/127.0.0.1/tcp/{port}/p2p/{pid}"


def test_round_trip_orders_by_last_seen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "peers.json"
    cache = PeerCache.load(path)
    assert cache.addrs() == []
    assert cache.remember("old", [ADDR.format(port=1, pid="old")], now=100.0)
    assert cache.remember("new", [ADDR.format(port=2, pid="new")], now=200.0)
    assert not cache.remember("new", [ADDR.format(port=2, pid="new")], now=300.0), "same addrs: no change"
    cache.save()
    again = PeerCache.load(path)
    assert again.addrs() == [ADDR.format(port=2, pid="new"), ADDR.format(port=1, pid="old")]
    assert again.peers["new"].last_seen == 300.0
    assert [p.name for p in path.parent.iterdir()] == ["peers.json"], "no temporary file left behind"


def test_corrupt_or_foreign_file_is_treated_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    path.write_text("{not json")
    assert PeerCache.load(path).peers == {}
    path.write_text(json.dumps({"version": 99, "peers": []}))
    assert PeerCache.load(path).peers == {}
    path.write_text(json.dumps({"version": 1, "peers": [{"peer_id": "x"}]}))
    cache = PeerCache.load(path)
    assert cache.peers == {}
    cache.remember("y", [ADDR.format(port=3, pid="y")])
    cache.save()
    assert PeerCache.load(path).addrs() == [ADDR.format(port=3, pid="y")]


def test_capacity_keeps_most_recent(tmp_path: Path) -> None:
    cache = PeerCache.load(tmp_path / "peers.json", capacity=3)
    for i in range(5):
        cache.remember(f"p{i}", [ADDR.format(port=i + 1, pid=f"p{i}")], now=float(i))
    assert sorted(cache.peers) == ["p2", "p3", "p4"]


def test_unwritable_location_does_not_raise(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = PeerCache(path=blocker / "peers.json")
    cache.remember("p", [ADDR.format(port=1, pid="p")])
    cache.save()  # parent is a file: logged, not raised
    assert not (blocker / "peers.json").exists()


def test_no_path_means_memory_only() -> None:
    cache = PeerCache.load(None)
    cache.remember("p", [ADDR.format(port=1, pid="p")])
    cache.save()
    assert cache.addrs() == [ADDR.format(port=1, pid="p")]
