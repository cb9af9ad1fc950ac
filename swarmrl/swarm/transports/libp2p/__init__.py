"""py-libp2p transport (gossipsub + a direct-push stream protocol), imported only when chosen.

- ``transport``: ``Libp2pTransport`` (the ``Transport`` the node uses; runs the host on its own trio thread).
- ``stack``: host construction, listen addresses, bootstrap dialling, mDNS, the pubsub router.
- ``push``: the direct-push protocol (length-prefixed frames to each connected peer; the gossip fallback).
- ``hardened``: connection and handshake limits, per-peer stream caps, timeouts.
- ``settings``: the libp2p knobs as one frozen dataclass, built from ``swarm.*``.
- ``peercache``: known peers persisted across restarts.
"""
