"""Emulated WAN for the netns tests: one network namespace per node, joined through a hub namespace.

Layout (``S`` is a per-run second octet, names carry a per-run tag, everything is removed by ``close``)::

    node i (ns TAGn<i>): 10.S.<i>.2/24 on TAGb<i>, default route via the hub
    hub    (ns TAGh):    10.S.<i>.1/24 on each TAGa<i>; iptables REDIRECTs node-to-node TCP into the
                         delay relay (``tests.netns.linkrelay``), which connects onward itself
                         (``delay_relay=False``: plain routing, no delays, for the NAT test's hole punch)

``uplink(i, "1mbit")`` caps node i's egress with ``tc tbf`` on its veth; ``split(A, B)`` blackholes every
connection between the two groups with iptables in the hub (both legs that face the nodes, matched on the
conntrack's original destination, so existing connections stall like a cut link and new ones cannot form);
``heal()`` removes those rules. Each node's 127.0.0.1 services (control, metrics) are reached from the test
process through ``forward(i, port)``: a local listener whose connections are opened from a thread that has
entered the node's namespace (``setns``), so the test needs no address outside the namespaces it made.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

CLONE_NEWNET = 0x40000000
RELAY_PORT = 9000


def netns_available() -> str | None:
    """None when this machine can run the netns tests, else the precise reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, iptables)"
    for tool in ("ip", "tc", "iptables"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed"
    probe = f"wprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        nat = _run_ok(["ip", "netns", "exec", probe, "iptables", "-t", "nat", "-L", "-n"])
        if nat is not None:
            return f"iptables nat table unusable: {nat}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _run_ok(cmd: list[str]) -> str | None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def sh(*cmd: str) -> None:
    done = subprocess.run(list(cmd), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")


class Wan:
    def __init__(
        self, nodes: int, delays_ms: dict[tuple[int, int], float], default_ms: float, delay_relay: bool = True
    ) -> None:
        self.nodes = nodes
        self.delay_relay = delay_relay
        self.tag = f"w{os.getpid() % 100000}"
        self.octet = 64 + os.getpid() % 150
        self.hub = f"{self.tag}h"
        self.delays_ms = delays_ms
        self.default_ms = default_ms
        self.relay: subprocess.Popen[bytes] | None = None
        self._made: list[str] = []
        self._listeners: list[socket.socket] = []
        self._closing = threading.Event()
        self.nat_ns: dict[int, str] = {}

    def ns(self, i: int) -> str:
        return f"{self.tag}n{i}"

    def addr(self, i: int) -> str:
        return f"10.{self.octet}.{i}.2"

    def subnet(self, i: int) -> str:
        return f"10.{self.octet}.{i}.0/24"

    def hx(self, *cmd: str) -> None:
        sh("ip", "netns", "exec", self.hub, *cmd)

    def nx(self, i: int, *cmd: str) -> None:
        sh("ip", "netns", "exec", self.ns(i), *cmd)

    def up(self, log_dir: Path) -> None:
        sh("ip", "netns", "add", self.hub)
        self._made.append(self.hub)
        self.hx("ip", "link", "set", "lo", "up")
        self.hx("sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i in range(self.nodes):
            ns = self.ns(i)
            sh("ip", "netns", "add", ns)
            self._made.append(ns)
            a, b = f"{self.tag}a{i}", f"{self.tag}b{i}"
            sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            sh("ip", "link", "set", a, "netns", self.hub)
            sh("ip", "link", "set", b, "netns", ns)
            self.hx("ip", "addr", "add", f"10.{self.octet}.{i}.1/24", "dev", a)
            self.hx("ip", "link", "set", a, "up")
            self.nx(i, "ip", "link", "set", "lo", "up")
            self.nx(i, "ip", "addr", "add", f"{self.addr(i)}/24", "dev", b)
            self.nx(i, "ip", "link", "set", b, "up")
            self.nx(i, "ip", "route", "add", "default", "via", f"10.{self.octet}.{i}.1")
        self.hx("iptables", "-N", "WANSPLIT")
        self.hx("iptables", "-A", "INPUT", "-j", "WANSPLIT")
        self.hx("iptables", "-A", "OUTPUT", "-j", "WANSPLIT")
        self.hx("iptables", "-A", "FORWARD", "-j", "WANSPLIT")
        if not self.delay_relay:
            return  # plain routing: hole punching needs the peers' own TCP packets, not a proxy's
        # node-to-node TCP goes through the delay relay
        self.hx(
            "iptables", "-t", "nat", "-A", "PREROUTING", "-i", f"{self.tag}a+", "-p", "tcp",
            "-d", f"10.{self.octet}.0.0/16", "-j", "REDIRECT", "--to-ports", str(RELAY_PORT),
        )  # fmt: skip
        delays = {f"{s},{d}": ms for (s, d), ms in self.delays_ms.items()}
        import json

        log = (log_dir / "relay.log").open("ab")
        self.relay = subprocess.Popen(
            [
                "ip", "netns", "exec", self.hub, sys.executable, "-m", "tests.netns.linkrelay",
                "--port", str(RELAY_PORT), "--delays", json.dumps(delays), "--default-ms", str(self.default_ms),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        assert self.relay.stdout is not None
        line = self.relay.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError(f"the delay relay did not start: {line!r}")

    def nat(self, i: int) -> str:
        """Put node i behind a NAT router: node slot i on the hub becomes the router (10.S.i.2, MASQUERADE),
        and the node itself moves to ns TAGp<i> at 192.168.<S>.2 behind it. Nothing outside can dial it;
        it can dial out. Returns the node's (private) address. Call after ``up``."""
        router, inner = self.ns(i), f"{self.tag}p{i}"
        sh("ip", "netns", "add", inner)
        self._made.append(inner)
        self.nat_ns[i] = inner
        a, b = f"{self.tag}c{i}", f"{self.tag}d{i}"
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", router)
        sh("ip", "link", "set", b, "netns", inner)
        private = f"192.168.{(self.octet + i) % 250}"
        self.nx(i, "ip", "addr", "add", f"{private}.1/24", "dev", a)
        self.nx(i, "ip", "link", "set", a, "up")
        self.nx(i, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.nx(i, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", f"{self.tag}b{i}", "-j", "MASQUERADE")
        # a home router: unsolicited inbound TCP is dropped silently (no RST that would kill a hole punch)
        self.nx(i, "iptables", "-A", "INPUT", "-i", f"{self.tag}b{i}", "-p", "tcp",
                "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")  # fmt: skip
        sh("ip", "netns", "exec", inner, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", inner, "ip", "addr", "add", f"{private}.2/24", "dev", b)
        sh("ip", "netns", "exec", inner, "ip", "link", "set", b, "up")
        sh("ip", "netns", "exec", inner, "ip", "route", "add", "default", "via", f"{private}.1")
        return self.nat_addr(i)

    def nat_addr(self, i: int) -> str:
        """The private address of node i behind its NAT (``nat(i)`` first)."""
        return f"192.168.{(self.octet + i) % 250}.2"

    def uplink(self, i: int, rate: str) -> None:
        self.nx(i, "tc", "qdisc", "add", "dev", f"{self.tag}b{i}", "root", "tbf", "rate", rate,
                "burst", "32kbit", "latency", "400ms")  # fmt: skip

    def split(self, left: list[int], right: list[int]) -> None:
        for xs, ys in ((left, right), (right, left)):
            for x in xs:
                for y in ys:
                    sx, sy = self.subnet(x), self.subnet(y)
                    for side in ("-s", "-d"):  # both legs that face the nodes
                        self.hx("iptables", "-A", "WANSPLIT", side, sx, "-m", "conntrack", "--ctorigdst", sy,
                                "-j", "DROP")  # fmt: skip

    def heal(self) -> None:
        self.hx("iptables", "-F", "WANSPLIT")

    def command(self, i: int, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.nat_ns.get(i, self.ns(i)), *argv]

    def can_connect(self, i: int, host: str, port: int, timeout: float = 3.0) -> bool:
        """Whether a TCP connection from node i's namespace to host:port succeeds."""
        result: list[bool] = []

        def attempt() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.nat_ns.get(i, self.ns(i))}", os.O_RDONLY)
            try:
                libc.setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            try:
                socket.create_connection((host, port), timeout=timeout).close()
                result.append(True)
            except OSError:
                result.append(False)

        t = threading.Thread(target=attempt, daemon=True)
        t.start()
        t.join(timeout + 2)
        return bool(result and result[0])

    # ------------------------------------------------------------------ reaching 127.0.0.1 in a node ns
    def forward(self, i: int, port: int) -> str:
        """A 127.0.0.1 address in the test's namespace whose connections reach 127.0.0.1:``port`` in node i."""
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        self._listeners.append(lsock)
        path = f"/run/netns/{self.nat_ns.get(i, self.ns(i))}"
        threading.Thread(target=self._accept, args=(lsock, path, port), daemon=True).start()
        return f"127.0.0.1:{lsock.getsockname()[1]}"

    def _accept(self, lsock: socket.socket, path: str, port: int) -> None:
        while not self._closing.is_set():
            try:
                client, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._bridge, args=(client, path, port), daemon=True).start()

    @staticmethod
    def _bridge(client: socket.socket, path: str, port: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:  # this thread only
                client.close()
                return
        finally:
            os.close(fd)
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)

        def copy(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=copy, args=(upstream, client), daemon=True)
        t.start()
        copy(client, upstream)
        t.join(timeout=30)
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closing.set()
        for lsock in self._listeners:
            lsock.close()
        if self.relay is not None and self.relay.poll() is None:
            self.relay.kill()
            self.relay.wait(timeout=10)
        for ns in reversed(self._made):  # deleting a namespace deletes its veth ends too
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
