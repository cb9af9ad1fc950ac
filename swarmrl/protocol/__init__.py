"""Wire and domain types. A leaf package: imports nothing else from swarmrl except ``errors``.

- ``types``: the domain dataclasses every subsystem shares (``TaskRef``, ``Completion``, ``RolloutGroup``).
- ``swarm.proto``: the wire schema (envelopes, batches, groups; the gRPC transport and NodeControl services);
  ``swarm_pb2*.py`` are generated from it by ``codegen`` (``make proto``), never edited by hand.
- ``envelope``: encode, sign, verify and decode envelopes within limits; the one place wire bytes become
  trusted objects (rejection reasons are ``REASONS``).
- ``peerid``: libp2p peer ids of ed25519 keys without importing libp2p.

Changing the wire: add fields as proto3 ``optional`` (or new messages) so old envelopes still decode, run
``make proto``, and extend ``envelope`` checks and its tests.
"""

from swarmrl.protocol.types import Completion, PolicyInfo, RolloutGroup, TaskRef

__all__ = ["Completion", "PolicyInfo", "RolloutGroup", "TaskRef"]
