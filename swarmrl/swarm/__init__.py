"""The swarm: transports, admission, receive path, external rollout pool and SAPO sampler.

Never imports torch, ``trainer`` or ``rewards``: a gossip-only process stays small. The transports live in
``transports/`` (the gRPC and libp2p ones are imported only by ``build_transport`` when the config chooses them).

Public surface: ``Swarm`` (the facade the node uses), ``build_transport``, ``Identity``, the ``Transport``
interface, ``SwarmEvents``/``CountingEvents`` and ``MemoryHub`` (tests and simulations).
"""

from swarmrl.swarm.events import CountingEvents, SwarmEvents
from swarmrl.swarm.identity import Identity
from swarmrl.swarm.service import Swarm
from swarmrl.swarm.transports.base import PeerState, Transport
from swarmrl.swarm.transports.factory import build_transport
from swarmrl.swarm.transports.memory import MemoryHub

__all__ = [
    "CountingEvents",
    "Identity",
    "MemoryHub",
    "PeerState",
    "Swarm",
    "SwarmEvents",
    "Transport",
    "build_transport",
]
