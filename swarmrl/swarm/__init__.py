"""The swarm: admission, receive path, external rollout pool, SAPO sampler, and the transports.

Never imports torch, ``trainer``, ``rewards`` or ``node``: a gossip-only process stays small (checked by
``tests/unit/test_import_rules.py`` in a fresh interpreter).

- ``service``: ``Swarm``, the facade the node uses (publish, sample, observe_round, inspection).
- ``receive``: the receive path, top to bottom (size, signature, replay, rate, duplicates, task regeneration).
- ``admission`` / ``ratelimit`` / ``replay`` / ``lru``: peer scores and bans, token buckets, sequence windows,
  bounded caches.
- ``pool`` / ``sampler``: the external pool (per-peer shares, ageing) and which groups a round trains on.
- ``identity`` / ``clock`` / ``events`` / ``fdlimit``: ed25519 identity, clocks, the metrics callbacks, file
  descriptor budgets.
- ``transports/``: null, memory, gRPC and libp2p, and ``factory.build_transport``.

Public surface: ``Swarm``, ``build_transport``, ``Identity``, the ``Transport`` interface,
``SwarmEvents``/``CountingEvents`` and ``MemoryHub`` (tests and simulations).
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
