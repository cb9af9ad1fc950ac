"""Duplicate identity: a second node started with an identity key already live in the swarm is refused.

Real ``swarm-node run`` processes on loopback: ``a`` (bootstrap) and ``b`` train together; then ``b2`` starts
with a copy of ``b``'s identity key. ``b2`` must exit with code 2 and one clear line naming the identity;
``a`` must log that it refused it; ``b`` keeps training and trading with ``a``. A restart of ``b`` itself (same
key, after it stopped) is accepted: a dead leftover connection is not mistaken for a live duplicate.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.integration.swarm_procs import cluster, libp2p_addr
from tests.nodeutil import wait_for


def test_a_second_node_with_a_live_identity_is_refused(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        a = c.start("a", {"swarm": {"transport": "libp2p"}})
        a.wait_up()
        boot = {"swarm": {"transport": "libp2p", "bootstrap_peers": [libp2p_addr(a)]}}
        b = c.start("b", boot)
        b.wait_up()
        wait_for(lambda: a.accepted_from(b) > 0 and b.accepted_from(a) > 0, 180, "a and b to trade", 0.5)

        twin_dir = tmp_path / "b2"
        twin_dir.mkdir()
        shutil.copy2(b.data_dir / "identity.key", twin_dir / "identity.key")
        twin = c.start("b2", boot, data_dir=twin_dir)
        code = twin.process.wait(timeout=300)
        out = twin.log.read_text(errors="replace")
        assert code == 2, out[-3000:]
        lines = [line for line in out.splitlines() if "already live in the swarm" in line]
        assert len(lines) == 1, out[-3000:]
        assert b.peer_id in lines[0] and "Traceback" not in out

        wait_for(
            lambda: "two nodes are using one identity key" in a.log.read_text(), 30, "a to log the refusal"
        )
        # the live node is unharmed: it keeps trading with a
        before = a.accepted_from(b)
        round_b = b.round()
        wait_for(lambda: a.accepted_from(b) > before and b.round() > round_b, 120, "b to keep trading", 0.5)
        assert not a.bad_log_lines() and not b.bad_log_lines()

        # the same key on a restarted b (the old process gone) is accepted
        assert b.terminate() == 0
        again = c.start("b", boot, data_dir=b.data_dir, seed=1)
        again.wait_up()
        before = a.accepted_from_id(again.peer_id)
        wait_for(lambda: a.accepted_from_id(again.peer_id) > before, 180, "the restarted b to trade", 0.5)
        assert again.process.poll() is None
