"""A userspace WAN link for the netns tests: a transparent TCP proxy that delays each direction.

This kernel has no ``netem``, so latency and jitter are added here. The relay runs in the hub namespace of
``tests.netns.topology``; iptables REDIRECTs every TCP connection a node opens to another node into it, it
reads the original destination (``SO_ORIGINAL_DST``), connects there itself, and copies bytes both ways,
holding each chunk until ``now + delay(src, dst)``. Delays are per ordered pair of node indices (the third
octet of ``10.S.<i>.2``), in milliseconds, with uniform jitter of ``--jitter`` (a fraction of the delay);
delivery times never go backwards, so a stream stays in order (TCP over a real path with jitter does too).

    python -m tests.netns.linkrelay --port 9000 --delays '{"0,1": 80, "1,0": 120}' [--default-ms 100]

Prints ``ready`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import struct
import sys

SO_ORIGINAL_DST = 80


def original_dst(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack("!H", raw[2:4])[0]
    return socket.inet_ntoa(raw[4:8]), int(port)


def node_index(ip: str) -> int:
    return int(ip.split(".")[2])


class Link:
    def __init__(self, delays: dict[tuple[int, int], float], default_ms: float, jitter: float) -> None:
        self.delays = delays
        self.default_ms = default_ms
        self.jitter = jitter
        self.rng = random.Random(7)

    def delay_s(self, src: int, dst: int) -> float:
        base = self.delays.get((src, dst), self.default_ms) / 1000.0
        return max(0.0, base * (1.0 + self.rng.uniform(-self.jitter, self.jitter)))

    async def pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, src: int, dst: int
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def pump_in() -> None:
            last = 0.0
            try:
                while data := await reader.read(65536):
                    last = max(last, loop.time() + self.delay_s(src, dst))
                    queue.put_nowait((last, data))
            except (ConnectionError, OSError):
                pass
            queue.put_nowait((max(last, loop.time()), b""))

        async def pump_out() -> None:
            try:
                while True:
                    due, data = await queue.get()
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if not data:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass

        await asyncio.gather(pump_in(), pump_out())

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        peer = writer.get_extra_info("peername")
        try:
            host, port = original_dst(sock)
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10.0)
        except (OSError, TimeoutError):
            writer.close()
            return
        src, dst = node_index(peer[0]), node_index(host)
        try:
            await asyncio.gather(
                self.pipe(reader, up_writer, src, dst), self.pipe(up_reader, writer, dst, src)
            )
        finally:
            for w in (writer, up_writer):
                w.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delays", default="{}")
    parser.add_argument("--default-ms", type=float, default=100.0)
    parser.add_argument("--jitter", type=float, default=0.2)
    args = parser.parse_args()
    delays = {
        (int(k.split(",")[0]), int(k.split(",")[1])): float(v) for k, v in json.loads(args.delays).items()
    }
    link = Link(delays, args.default_ms, args.jitter)
    server = await asyncio.start_server(link.handle, "0.0.0.0", args.port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
