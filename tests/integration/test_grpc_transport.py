"""gRPC transport on real loopback sockets: envelopes flow between servers, reconnects, mutual TLS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swarmrl.config import NodeConfig
from swarmrl.errors import TaskError
from swarmrl.protocol.types import Completion, RolloutGroup, TaskRef
from swarmrl.swarm.events import CountingEvents
from swarmrl.swarm.identity import Identity
from swarmrl.swarm.service import Swarm
from swarmrl.swarm.transports.factory import build_transport
from swarmrl.swarm.transports.grpc import GrpcSettings, GrpcTransport

pytestmark = pytest.mark.timeout(60)


def regenerate(ref: TaskRef) -> tuple[str, str]:
    if ref.source != "arith":
        raise TaskError("unknown source")
    a, b = divmod(ref.index, 100)
    return f"What is {a}+{b}?", str(a + b)


def group(index: int) -> RolloutGroup:
    ref = TaskRef("arith", "add", "d", 0, index)
    q, a = regenerate(ref)
    return RolloutGroup(task=ref, question=q, answer=a, completions=[Completion(a), Completion("no")])


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def make_node(tmp: Path, name: str, static_peers: list[str], **swarm: Any) -> Swarm:
    grpc_cfg = {"static_peers": static_peers, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2}
    grpc_cfg.update(swarm.pop("grpc", {}))
    cfg = NodeConfig.model_validate(
        {
            "swarm": {
                "transport": "grpc",
                "swarm_id": "grpc-test",
                "listen_port": 0,
                "max_publish_per_second": 1000,
                "grpc": grpc_cfg,
                **swarm,
            },
            "sampling": {"strategy": "uniform"},
        }
    )
    ident = Identity.load_or_create(tmp / name / "identity.key")
    events = CountingEvents()
    return Swarm(cfg, ident, build_transport(cfg, ident, tmp / name, events=events), regenerate, events)


def test_three_servers_exchange_envelopes(tmp_path: Path) -> None:
    async def run() -> None:
        a = make_node(tmp_path, "a", [])
        await a.start()
        (addr_a,) = a.listen_addrs()
        assert not addr_a.endswith(":0")
        b = make_node(tmp_path, "b", [addr_a])
        await b.start()
        c = make_node(tmp_path, "c", [addr_a, b.listen_addrs()[0]])
        await c.start()
        await until(lambda: len(a.peers()) == 2 and len(b.peers()) == 2 and len(c.peers()) == 2)
        assert {p.peer_id for p in a.peers()} == {b.peer_id, c.peer_id}

        await a.publish([group(305)], round=1)
        await c.publish([group(1207), group(42)], round=1)
        await until(lambda: a.pool_size() == 2 and b.pool_size() == 3 and c.pool_size() == 1)
        got = b.sample(10, round=1, rescore=lambda gs: [[1.0, 0.0] for _ in gs])
        assert {g.peer for g in got} == {a.peer_id, c.peer_id}
        for n in (a, b, c):
            assert isinstance(n.events, CountingEvents) and not n.events.rejections
        for n in (a, b, c):
            await n.close()

    asyncio.run(run())


def test_reconnects_after_peer_restart(tmp_path: Path) -> None:
    async def run() -> None:
        a = make_node(tmp_path, "a", [])
        await a.start()
        addr = a.listen_addrs()[0]
        port = int(addr.rsplit(":", 1)[1])
        b = make_node(tmp_path, "b", [addr])
        await b.start()
        await until(lambda: len(b.peers()) == 1)
        await a.close()
        await until(lambda: not b.peers())
        a2 = make_node(tmp_path, "a", [], listen_port=port)  # same key, same port
        await a2.start()
        await until(lambda: len(b.peers()) == 1)
        await b.publish([group(7)], round=1)
        await until(lambda: a2.pool_size() == 1)
        await a2.close()
        await b.close()

    asyncio.run(run())


def test_allowlist_refuses_stream_from_unlisted_peer(tmp_path: Path) -> None:
    async def run() -> None:
        b_ident = Identity.load_or_create(tmp_path / "b" / "identity.key")
        a = make_node(tmp_path, "a", [], admission={"allowlist": [b_ident.peer_id_text]})
        await a.start()
        addr = a.listen_addrs()[0]
        b = make_node(tmp_path, "b", [addr])
        stranger = make_node(tmp_path, "s", [addr])
        await b.start()
        await stranger.start()
        await until(lambda: len(a.peers()) == 1)
        await a.publish([group(1)], round=1)
        await until(lambda: b.pool_size() == 1)
        await stranger.publish([group(2)], round=1)
        await b.publish([group(3)], round=1)
        await until(lambda: a.pool_size() == 1)
        assert [p.peer_id for p in a.peers()] == [b.peer_id]
        assert stranger.pool_size() == 0 and not stranger.peers()
        assert [e.group.task.index for e in a.pool_entries()] == [3]
        for n in (a, b, stranger):
            await n.close()

    asyncio.run(run())


def test_bound_port_is_reported_and_busy_port_fails(tmp_path: Path) -> None:
    from swarmrl.errors import TransportError

    async def run() -> None:
        ident = Identity.generate()
        first = GrpcTransport(GrpcSettings(swarm_id="s"), ident, ident.peer_id_text)
        await first.start()
        port = int(first.listen_addrs()[0].rsplit(":", 1)[1])
        assert port > 0
        second = GrpcTransport(GrpcSettings(swarm_id="s", listen_port=port), ident, ident.peer_id_text)
        with pytest.raises(TransportError, match="cannot listen"):
            await second.start()
        await second.close()
        await first.close()

    asyncio.run(run())


# ------------------------------------------------------------------------------------------- mutual TLS


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(tmp: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert, _write(tmp / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))


def make_leaf(
    tmp: Path, name: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return (
        _write(tmp / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM)),
        _write(tmp / f"{name}.key", _key_pem(key)),
    )


def test_mutual_tls(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    ca_key, ca_cert, ca_path = make_ca(certs, "swarm-ca")
    rogue_key, rogue_cert, _ = make_ca(certs, "rogue-ca")

    def tls(name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, ca: Path) -> dict[str, str]:
        crt, k = make_leaf(certs, name, key, cert)
        return {"tls_ca": str(ca), "tls_cert": str(crt), "tls_key": str(k)}

    async def run() -> None:
        a = make_node(tmp_path, "a", [], grpc=tls("a", ca_key, ca_cert, ca_path))
        await a.start()
        addr = a.listen_addrs()[0]
        b = make_node(tmp_path, "b", [addr], grpc=tls("b", ca_key, ca_cert, ca_path))
        # trusts the swarm CA (so it could verify the server) but holds a certificate from another CA
        rogue_tls = tls("r", rogue_key, rogue_cert, ca_path)
        rogue = make_node(tmp_path, "r", [addr], grpc=rogue_tls)
        # no TLS at all
        plain = make_node(tmp_path, "p", [addr])
        for n in (b, rogue, plain):
            await n.start()
        await until(lambda: len(a.peers()) == 1 and len(b.peers()) == 1)
        await a.publish([group(11)], round=1)
        await until(lambda: b.pool_size() == 1)
        await b.publish([group(12)], round=1)
        await until(lambda: a.pool_size() == 1)
        assert [p.peer_id for p in a.peers()] == [b.peer_id]
        for outsider in (rogue, plain):
            assert not outsider.peers() and outsider.pool_size() == 0
            assert isinstance(outsider.events, CountingEvents) and outsider.events.received == 0
        for n in (a, b, rogue, plain):
            await n.close()

    asyncio.run(run())
