"""One hivemind DHT node for ``benchmarks/gossip.py``: the baseline side of the gossip benchmark.

It speaks the same JSON-line control protocol as ``python -m swarmrl.apps.gossip_node --control stdio``
(``info``, ``wait_peers``, ``publish``, ``stats``, ``quit``), so the coordinator drives both sides the same
way. A round follows the reference SAPO swarm's pattern: ``store(key=round, subkey=peer id, value,
expiration)``, then ``get(key, latest=True)`` until all N subkeys are visible.

The pipe fix: the stock ``hivemind.DHT`` child process registers its command pipe with uvloop, which makes
the fd non-blocking; messages over 16 KiB then arrive garbled and the DHT dies or hangs (see
``shared/BASELINES.md``). ``PipeFixedDHT`` puts that fd back into blocking mode right after the reader is
registered (``os.set_blocking(fd, True)``); the result records that the fix was applied.

Runs under whichever interpreter has ``hivemind==1.1.12`` (the project venv, or ``.venv-bench``); it does
not import swarmrl.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import hivemind
import hivemind.dht.dht as hivemind_dht_module
from hivemind.utils import get_dht_time

KEY_PREFIX = "swarmrl-gossip-bench"
EXPIRATION_S = 600.0


class PipeFixedDHT(hivemind.DHT):  # type: ignore[misc]
    """``hivemind.DHT`` whose child keeps its parent-to-child pipe in blocking mode (the BASELINES fix)."""

    def run(self) -> None:  # runs in the forked DHT process only
        fd = self._inner_pipe.fileno()
        original = hivemind_dht_module.switch_to_uvloop

        def switch_and_fix() -> Any:
            loop = original()
            register = loop.add_reader

            def add_reader(fileno: int, callback: Callable[..., Any], *args: Any) -> Any:
                handle = register(fileno, callback, *args)
                if fileno == fd:
                    os.set_blocking(fd, True)
                return handle

            loop.add_reader = add_reader
            return loop

        hivemind_dht_module.switch_to_uvloop = switch_and_fix
        try:
            super().run()
        finally:
            hivemind_dht_module.switch_to_uvloop = original


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _count_subkeys(result: Any) -> int:
    if result is None:
        return 0
    value: Any = getattr(result, "value", None)
    try:
        return len(value)  # a DictionaryDHTValue: one entry per subkey
    except TypeError:
        return 1


class HivemindNode:
    def __init__(self, initial_peers: list[str], poll_s: float) -> None:
        self.dht = PipeFixedDHT(
            initial_peers=initial_peers or None,
            start=True,
            host_maddrs=["/ip4/127.0.0.1/tcp/0"],
        )
        self.peer_id = str(self.dht.peer_id)
        self.poll_s = poll_s

    def info(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "addrs": [str(a) for a in self.dht.get_visible_maddrs()],
            "torch_loaded": "torch" in sys.modules,
            "pid": os.getpid(),
            "hivemind_version": hivemind.__version__,
            "pipe_fix": True,
        }

    def publish(self, tag: int, batches: int, size: int, nodes: int, timeout_s: float) -> dict[str, Any]:
        """Store ``batches`` values (one key each), then poll until every key holds ``nodes`` subkeys."""
        keys = [f"{KEY_PREFIX}/{tag}" if batches == 1 else f"{KEY_PREFIX}/{tag}/{i}" for i in range(batches)]
        expiration = get_dht_time() + EXPIRATION_S
        stores = [
            self.dht.store(key, os.urandom(size), expiration, subkey=self.peer_id, return_future=True)
            for key in keys
        ]
        stored = [bool(f.result()) for f in stores]
        published_t = time.monotonic()
        deadline = published_t + timeout_s
        seen = dict.fromkeys(keys, 0)
        while True:
            missing = [k for k in keys if seen[k] < nodes]
            if not missing:
                break
            if time.monotonic() > deadline:
                break
            futures = [(k, self.dht.get(k, latest=True, return_future=True)) for k in missing]
            for key, fut in futures:
                seen[key] = max(seen[key], _count_subkeys(fut.result()))
            if any(seen[k] < nodes for k in missing) and self.poll_s > 0:
                time.sleep(self.poll_s)
        t = time.monotonic()
        received = sum(max(0, c - 1) for c in seen.values())
        ok = all(c >= nodes for c in seen.values())
        return {
            "tag": tag,
            "ok": ok,
            "received": received,
            "t": t,
            "published_t": published_t,
            "stored": all(stored),
        }

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "peak_rss_bytes": int(usage.ru_maxrss) * 1024,
            "cpu_seconds": float(usage.ru_utime + usage.ru_stime),
            "torch_loaded": "torch" in sys.modules,
        }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--initial-peer", action="append", default=[], help="multiaddr of a running DHT peer")
    p.add_argument("--poll-ms", type=float, default=5.0, help="pause between get() polls")
    args = p.parse_args(argv)
    node = HivemindNode(list(args.initial_peer), args.poll_ms / 1000.0)
    _emit("ready", **node.info())
    try:
        for line in sys.stdin:
            try:
                msg = json.loads(line)
                cmd = str(msg.get("cmd", ""))
                if cmd == "quit":
                    _emit("bye", **node.stats())
                    break
                if cmd == "info":
                    _emit("info", **node.info())
                elif cmd == "wait_peers":
                    _emit("peers", count=int(msg.get("count", 1)), ok=True)
                elif cmd == "publish":
                    _emit(
                        "have",
                        **node.publish(
                            int(msg["tag"]),
                            int(msg.get("batches", 1)),
                            int(msg["envelope_bytes"]),
                            int(msg["nodes"]),
                            float(msg.get("timeout_s", 60.0)),
                        ),
                    )
                elif cmd == "stats":
                    _emit("stats", **node.stats())
                else:
                    _emit("error", message=f"unknown command {cmd!r}")
            except (ValueError, KeyError, TypeError) as exc:
                _emit("error", message=str(exc))
    finally:
        node.dht.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
