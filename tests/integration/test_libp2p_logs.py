"""py-libp2p's own log records go through the node's logging, not Python's bare last-resort handler.

py-libp2p turns propagation of its ``libp2p`` logger off at import, so "Failed to open TCP stream: ..." used
to appear as a bare line on stderr. A real transport dials a closed loopback port; the record must reach the
root logger's handlers, demoted to WARNING (an unreachable peer is not an error of this node).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from swarmrl.swarm.identity import Identity
from swarmrl.swarm.transports.libp2p.transport import Libp2pTransport


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_failed_dial_is_logged_through_the_root_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.DEBUG)
    logging.getLogger().addHandler(keep)
    dead = Identity.generate().peer_id_text

    async def main() -> None:
        transport = Libp2pTransport(
            Identity.generate().private_key_seed(),
            "logs-swarm",
            bootstrap=[f"/ip4/127.0.0.1/tcp/{_closed_port()}/p2p/{dead}"],
            connect_timeout_s=2.0,
            redial_s=0.5,
        )
        await transport.start()
        try:
            deadline = time.monotonic() + 30
            while not any("Failed to open TCP stream" in r.getMessage() for r in records):
                assert time.monotonic() < deadline, "no 'Failed to open TCP stream' record reached the root"
                await asyncio.sleep(0.05)
        finally:
            await transport.close()

    try:
        asyncio.run(main())
    finally:
        logging.getLogger().removeHandler(keep)
    assert logging.getLogger("libp2p").propagate
    failed = [r for r in records if "Failed to open TCP stream" in r.getMessage()]
    assert failed[0].name.startswith("libp2p.")
    assert all(r.levelno == logging.WARNING for r in failed), [r.levelname for r in failed]
