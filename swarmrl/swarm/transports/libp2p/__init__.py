"""py-libp2p transport (gossipsub + a direct-push stream protocol), imported only when chosen.

- ``transport``: ``Libp2pTransport`` (the ``Transport`` the node uses; runs the host on its own trio thread).
- ``stack``: host construction, listen addresses, mDNS, the pubsub router, the publisher and the peer watch.
- ``dialing``: dialling bootstrap, cached and mDNS peers with per-peer backoff.
- ``push``: the direct-push protocol (length-prefixed frames to each connected peer; the gossip fallback).
- ``hardened``: connection and handshake limits, per-peer stream caps, timeouts.
- ``settings``: the libp2p knobs as one frozen dataclass, built from ``swarm.*``.
- ``peercache``: known peers persisted across restarts.
- ``frames``: push-frame validation; ``selection``: the SELECT frames of bounded ingress.
- ``instance``: duplicate-identity detection (a per-start nonce compared over live connections).
- ``follow``: connections that follow bounded ingress's selection (dial chosen senders, prune idle ones).
- ``relay``: circuit relay v2 (``swarm.relay`` serves hop, ``swarm.relay_reserve`` reserves) and DCUtR hole
  punching (relayed connections upgraded to direct ones).
"""
