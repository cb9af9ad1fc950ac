"""Transports: how envelopes move between peers. The swarm core (admission, receive path, pool, sampler)
sees only the ``Transport`` interface in ``base``.

- ``base``: the ``Transport`` protocol and ``PeerState``.
- ``null``: no peers (``swarm.transport: none``): publishes go nowhere, nothing arrives.
- ``memory``: an in-process hub (tests, the SAPO harness, the simulator).
- ``grpc``: private swarms over gRPC streams with static peers and optional mutual TLS.
- ``libp2p/``: public swarms over py-libp2p gossipsub, with a direct-push protocol, connection hardening,
  settings and a peer cache.
- ``factory``: ``build_transport`` (the one place a config section becomes a transport).

Adding a transport: implement ``base.Transport`` in a new module here, name its constructor's (or settings
dataclass's) knobs as the config fields are named so ``factory.from_sections`` fills them, and add its name to
``swarm.transport`` in ``swarmrl/config/swarm.py`` and a branch to ``factory.build_transport``.
Heavy transports are imported only when chosen, so a gossip-only process stays torch-free and small.
"""
