"""``build_transport``: the transport ``swarm.transport`` names, built from the config sections.

A transport's constructor (or settings dataclass) names its knobs as the config does, so they are filled by
name from the sections that hold them (``from_sections``) instead of being copied one by one; only the values
that need work (files read, paths joined, tuples made) are passed explicitly. Heavy transports (gRPC,
libp2p) are imported only when chosen.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from swarmrl.errors import ConfigError
from swarmrl.swarm.events import SwarmEvents
from swarmrl.swarm.identity import Identity
from swarmrl.swarm.transports.base import Transport

if TYPE_CHECKING:
    from swarmrl.config import NodeConfig
    from swarmrl.swarm.transports.memory import MemoryHub

T = TypeVar("T")


def from_sections(build: Callable[..., T], *sections: Any, **given: Any) -> T:
    """Call ``build`` with ``given`` plus, for each other parameter, the attribute of that name in the first
    section that has one (parameters no section names keep their defaults)."""
    kwargs = dict(given)
    for name, param in inspect.signature(build).parameters.items():
        if name in kwargs or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        for section in sections:
            if name in type(section).model_fields:
                kwargs[name] = getattr(section, name)
                break
    return build(**kwargs)


def _under(data_dir: Path | None, relative: str) -> Path | None:
    if not relative or data_dir is None:
        return None
    return data_dir / relative


def build_transport(
    cfg: NodeConfig,
    identity: Identity,
    data_dir: Path | None,
    *,
    events: SwarmEvents | None = None,
    hub: MemoryHub | None = None,
) -> Transport:
    """The transport ``cfg.swarm.transport`` names."""
    sw = cfg.swarm
    kind = sw.transport
    if kind == "none":
        from swarmrl.swarm.transports.null import NullTransport

        return NullTransport()
    if kind == "memory":
        if hub is None:
            raise ConfigError("swarm.transport", "'memory' needs a MemoryHub (tests and simulations only)")
        return hub.transport(identity.peer_id_text, events)
    if kind == "grpc":
        from swarmrl.swarm.transports.grpc import GrpcSettings, GrpcTransport, TlsFiles

        g = sw.grpc
        tls = None
        if g.tls_ca is not None and g.tls_cert is not None and g.tls_key is not None:
            tls = TlsFiles(g.tls_ca, g.tls_cert, g.tls_key)
        settings = from_sections(GrpcSettings, g, sw, sw.limits, static_peers=tuple(g.static_peers), tls=tls)
        return GrpcTransport(settings, identity, identity.peer_id_text, events)
    from swarmrl.swarm.transports.libp2p.transport import MAX_MESSAGE_BYTES, Libp2pTransport, read_psk

    return from_sections(
        Libp2pTransport,
        sw,
        private_key=identity.private_key_seed(),
        bootstrap=list(sw.bootstrap_peers),
        psk=read_psk(sw.psk_file) if sw.psk_file is not None else None,
        peer_cache_path=_under(data_dir, sw.peer_cache_file),
        max_message_bytes=min(sw.limits.max_envelope_bytes, MAX_MESSAGE_BYTES),
        events=events,
    )
