"""Config sections of the swarm subsystem: transport, admission, limits, pool and sampler."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from swarmrl.config.base import Section
from swarmrl.errors import InvalidValue


class AdaptiveSection(Section):
    """Rule of the 'adaptive' sampling strategy (see swarmrl/swarm/sampler.py: AdaptiveController)."""

    window: int = Field(
        8,
        ge=2,
        le=1000,
        description="Rounds of own reward history used to judge whether external groups help.",
    )
    min_evidence: int = Field(
        3, ge=1, le=1000, description="Rounds needed both with and without external groups before judging."
    )
    harm_margin: float = Field(
        0.01,
        ge=0,
        le=10,
        description="External groups 'hurt' when they lower the mean reward gain by this much.",
    )
    probe_every: int = Field(
        5, ge=2, le=1000, description="Every N rounds flip the decision once to keep both estimates fresh."
    )
    confidence_z: float = Field(
        2.0,
        ge=0,
        le=10,
        description="External groups are taken only when their gain exceeds this many standard errors.",
    )


class SamplingSection(Section):
    local_groups: int = Field(4, ge=0, le=4096, description="I: own rollout groups trained on per round.")
    external_groups: int = Field(
        4, ge=0, le=4096, description="J: groups sampled from the swarm pool per round (0 = train alone)."
    )
    strategy: Literal["nonzero_advantage_uniform", "uniform", "top_reward", "adaptive"] = Field(
        "nonzero_advantage_uniform", description="How J external groups are drawn from the pool."
    )
    filter_local: bool = Field(
        False, description="Also drop own zero-advantage groups (the '8/0 filtered' control)."
    )
    fill_with_local: bool = Field(
        True,
        description="Keep the per-round budget I+J: generate more own groups when the pool has fewer than J "
        "(a node alone trains on I+J own groups). Off = additive sharing: I own groups plus whatever useful "
        "external groups the pool gives, up to J.",
    )
    rescore_factor: int = Field(
        4,
        ge=1,
        le=64,
        description="Rescore at most J * this many pool candidates per round (bounds local reward work).",
    )
    external_samples: Literal["all", "positive"] = Field(
        "positive",
        description="Which external completions enter the loss: 'positive' = only those with a positive "
        "advantage in their (locally re-scored) group, negatives get zero weight; 'all' = every completion "
        "(plain SAPO). Negative external samples push down text the local policy rarely emits (docs/sapo.md).",
    )
    offpolicy_correction: Literal["none", "truncated_is"] = Field(
        "none",
        description="Off-policy correction of external completions: 'truncated_is' weights each one by "
        "min(pi_local / pi_sender, offpolicy_cap), from the sender's stated sequence log-prob (completions "
        "without it are not corrected); 'none' trains them as if on-policy.",
    )
    offpolicy_cap: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Cap of the truncated importance weight: a peer that lies about its log-probs gains at most "
        "this weight per completion (1 = never more than an uncorrected sample).",
    )
    adaptive: AdaptiveSection = Field(default_factory=AdaptiveSection)


class LimitsSection(Section):
    """Size and count limits on received messages, enforced before work grows with input size."""

    max_envelope_bytes: int = Field(
        1_000_000, ge=1024, le=64_000_000, description="Largest envelope accepted (bytes on the wire)."
    )
    max_groups_per_batch: int = Field(64, ge=1, le=4096, description="Most rollout groups in one envelope.")
    max_completions_per_group: int = Field(64, ge=1, le=4096, description="Most completions in one group.")
    max_completion_chars: int = Field(
        16_384, ge=16, le=1_000_000, description="Longest completion text accepted (characters)."
    )
    max_question_chars: int = Field(
        16_384, ge=16, le=1_000_000, description="Longest question or answer text accepted (characters)."
    )
    max_ref_chars: int = Field(
        128,
        ge=8,
        le=65_536,
        description="Longest TaskRef string (source, dataset, config digest) accepted (characters).",
    )
    max_meta_chars: int = Field(
        256,
        ge=8,
        le=65_536,
        description="Longest advisory metadata string (policy model, node name) accepted (characters).",
    )
    max_external_completion_chars: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Peers' completions are cut to this many characters at intake (bounds training time on "
        "external groups); 0 = 8 x generation.max_new_tokens, at least 256.",
    )
    max_clock_skew_s: float = Field(
        300.0, ge=1, le=86_400, description="Envelopes stamped further in the future than this are refused."
    )
    max_message_age_s: float = Field(
        900.0,
        ge=1,
        le=604_800,
        description="Envelopes older than this (sender clock) are refused as replays.",
    )


class RateLimitSection(Section):
    """Per-peer token buckets (after signature check, so nobody can spend another peer's budget)."""

    messages_per_second: float = Field(5.0, gt=0, le=100_000, description="Sustained envelopes per peer.")
    burst: int = Field(20, ge=1, le=1_000_000, description="Envelopes a peer may send at once (bucket size).")
    link_messages_per_second: float = Field(
        50.0,
        gt=0,
        le=1_000_000,
        description="Sustained envelopes per transport link (the peer that hands them over, relays "
        "included), charged before any parsing or signature work.",
    )
    link_burst: int = Field(
        200, ge=1, le=10_000_000, description="Envelopes a link may hand over at once (bucket size)."
    )


class AdmissionSection(Section):
    """Who may talk to this node, and how misbehaviour is punished."""

    allowlist: list[str] = Field(
        default_factory=list,
        description="Peer ids (base58) allowed to exchange rollouts; empty admits everyone (public swarm).",
    )
    ban_threshold: float = Field(
        -20.0, le=0, ge=-1e9, description="A peer whose score falls to this value or below is banned."
    )
    ban_seconds: float = Field(600.0, ge=0, le=604_800, description="How long a ban lasts.")
    score_recovery_per_minute: float = Field(
        1.0, ge=0, le=1e6, description="Score regained per minute of good behaviour, up to 0."
    )
    replay_window: int = Field(
        64,
        ge=0,
        le=4096,
        description="Sequence numbers accepted out of order behind the highest seen (0 = strictly increasing).",
    )
    replay_state_file: str = Field(
        "swarm/replay.json",
        description="Per-sender sequence state, relative to node.data_dir (kept across restarts); '' disables.",
    )
    allow_unverified_tasks: bool = Field(
        False, description="Accept groups whose TaskRef this node cannot regenerate (unsafe; off by default)."
    )
    max_tracked_peers: int = Field(
        10_000, ge=16, le=10_000_000, description="Peers tracked for scores, rate limits and replay (LRU)."
    )
    duplicate_cache: int = Field(
        65_536, ge=16, le=10_000_000, description="Content hashes remembered to drop duplicate groups."
    )

    @field_validator("allowlist")
    @classmethod
    def _no_blank_ids(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value]
        if any(not v for v in cleaned):
            raise InvalidValue("allowlist entries must be non-empty peer ids")
        return cleaned


class PoolSection(Section):
    """The pool of accepted external groups waiting to be sampled."""

    max_groups: int = Field(
        512, ge=1, le=1_000_000, description="Most external groups kept (oldest dropped)."
    )
    per_peer_share: float = Field(
        0.25, gt=0, le=1, description="Largest fraction of the pool one peer's groups may occupy."
    )
    max_age_rounds: int = Field(
        8, ge=1, le=100_000, description="External groups older than this many local rounds are dropped."
    )


class GrpcSection(Section):
    """The gRPC transport: static peers over bidirectional streams, optional mutual TLS."""

    static_peers: list[str] = Field(
        default_factory=list, description="'host:port' of peers to dial (each side may list the other)."
    )
    tls_ca: Path | None = Field(
        None, description="CA bundle (PEM) that signs every swarm member's certificate."
    )
    tls_cert: Path | None = Field(None, description="This node's certificate chain (PEM).")
    tls_key: Path | None = Field(None, description="This node's private key for tls_cert (PEM).")
    tls_server_name: str = Field(
        "", description="Name expected in peers' server certificates instead of the dialled host ('' = host)."
    )
    reconnect_min_s: float = Field(0.2, gt=0, le=60, description="First reconnect delay after a lost stream.")
    reconnect_max_s: float = Field(10.0, gt=0, le=3600, description="Longest reconnect delay (back-off cap).")
    handshake_timeout_s: float = Field(5.0, gt=0, le=300, description="Time allowed for the Hello exchange.")
    send_queue: int = Field(
        256, ge=1, le=1_000_000, description="Envelopes queued per peer (oldest dropped)."
    )
    max_connections: int = Field(
        256,
        ge=8,
        le=1_000_000,
        description="Inbound TCP connections held at once (more are closed on accept); lowered at start "
        "if the open-file limit does not leave room for it.",
    )
    max_streams_per_connection: int = Field(
        4, ge=1, le=1024, description="Concurrent streams one connection may open (HTTP/2 setting)."
    )
    max_handshakes: int = Field(
        64, ge=1, le=100_000, description="Inbound streams handshaking at once (more are refused at once)."
    )
    max_links_per_peer: int = Field(
        2, ge=1, le=64, description="Authenticated links per peer id; a new one closes the oldest."
    )
    idle_timeout_s: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="A link with no complete frame (not even a keepalive) for this long is closed.",
    )
    keepalive_s: float = Field(
        10.0, gt=0, le=86_400, description="An idle link sends an empty keepalive frame this often."
    )

    @model_validator(mode="after")
    def _tls_complete(self) -> GrpcSection:
        given = [p is not None for p in (self.tls_ca, self.tls_cert, self.tls_key)]
        if any(given) and not all(given):
            raise InvalidValue("mutual TLS needs all of tls_ca, tls_cert and tls_key (or none of them)")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise InvalidValue("reconnect_max_s must be >= reconnect_min_s")
        if self.keepalive_s >= self.idle_timeout_s:
            raise InvalidValue("keepalive_s must be below idle_timeout_s (or idle links would be closed)")
        return self

    @field_validator("static_peers")
    @classmethod
    def _host_port(cls, value: list[str]) -> list[str]:
        for addr in value:
            host, sep, port = addr.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise InvalidValue(f"static peer {addr!r} must look like 'host:port'")
        return value


class SwarmSection(Section):
    transport: Literal["none", "memory", "libp2p", "grpc"] = Field(
        "libp2p",
        description="'libp2p' (gossipsub, default), 'grpc' (static peers), 'none' (train alone), 'memory' (tests).",
    )
    swarm_id: str = Field("swarmrl-public", min_length=1, max_length=128, description="Swarm (topic) name.")
    publish_groups: int = Field(4, ge=0, le=4096, description="Own groups gossiped per round.")
    listen_host: str = Field("127.0.0.1", description="Address the transport listens on ('0.0.0.0' for LAN).")
    listen_port: int = Field(
        0, ge=0, le=65535, description="Port the transport listens on; 0 picks a free one."
    )
    identity_file: str = Field(
        "identity.key", description="ed25519 identity key (PEM, mode 0600), relative to node.data_dir."
    )
    bootstrap_peers: list[str] = Field(
        default_factory=list, description="libp2p multiaddrs (with /p2p/<peer id>) dialled at start."
    )
    psk_file: Path | None = Field(
        None, description="libp2p private-network key file; peers without the same key cannot connect."
    )
    peer_cache_file: str = Field(
        "swarm/peers.json", description="Known peer addresses, relative to node.data_dir ('' disables)."
    )
    mdns: bool = Field(False, description="Discover peers on the local network with mDNS (libp2p).")
    relay: bool = Field(
        False,
        description="libp2p: serve as a circuit relay (v2) for nodes that cannot be dialled (behind a NAT); "
        "run it on a machine with a public address (docs/operations.md).",
    )
    relay_reserve: bool = Field(
        False,
        description="libp2p, for a node behind a NAT: reserve a slot on the bootstrap peers that serve as "
        "relays and advertise the /p2p-circuit addresses, so peers reach this node through them.",
    )
    heartbeat_s: float = Field(1.0, gt=0, le=600, description="Gossipsub heartbeat interval (libp2p).")
    direct_push: bool = Field(
        True,
        description="libp2p: push own envelopes over direct streams to peers learned by peer exchange "
        "(gossipsub still relays to the rest).",
    )
    max_peers: int = Field(
        24, ge=1, le=1000, description="libp2p: peer exchange dials learned members up to this many peers."
    )
    push_queue: int = Field(
        256, ge=2, le=65536, description="libp2p: frames waiting per push stream before publishing waits."
    )
    max_connections: int = Field(
        128,
        ge=8,
        le=100_000,
        description="libp2p: connections held at once (inbound and outbound); lowered at start if the "
        "open-file limit does not leave room for it.",
    )
    max_pending_handshakes: int = Field(
        32,
        ge=1,
        le=100_000,
        description="libp2p: inbound connections in their security/muxer handshake at once; a new one "
        "evicts the oldest (stalled handshakes cannot lock peers out).",
    )
    max_pending_handshakes_per_address: int = Field(
        4,
        ge=1,
        le=100_000,
        description="libp2p: of those, at most this many from one remote address (IPv4 address, IPv6 /64); "
        "one more from it replaces its own oldest, so reconnecting fast cannot starve other addresses. "
        "At most max_pending_handshakes.",
    )
    handshake_timeout_s: float = Field(
        5.0, gt=0, le=300, description="libp2p: time allowed for an inbound connection's handshake."
    )
    push_frame_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="libp2p: a push-stream frame must arrive whole within this long of its first byte.",
    )
    ingress_groups_per_round: int = Field(
        32,
        ge=0,
        le=1_000_000,
        description="Bounded ingress (docs/scale.md): external groups this node takes in per round at most, "
        "split evenly among the senders it chooses; senders push only to the nodes that chose them. "
        "0 = unbounded, the old behaviour (every sender's envelopes reach every node).",
    )
    ingress_senders: int = Field(
        8,
        ge=1,
        le=10_000,
        description="Bounded ingress: senders this node chooses at a time (uniformly among the members it "
        "knows); with this many members or fewer it takes from all of them, as an unbounded node does.",
    )
    ingress_rotate_rounds: int = Field(
        1,
        ge=1,
        le=1_000_000,
        description="Bounded ingress: the chosen senders are drawn afresh every this many rounds.",
    )
    ingress_explore: int = Field(
        2,
        ge=0,
        le=10_000,
        description="Bounded ingress (libp2p): of the chosen senders, up to this many are members this node "
        "is not connected to (learned from peers) and is then dialled, so that beyond swarm.max_peers "
        "its senders still range over the whole swarm; it also caps the slots a peer listing made-up "
        "members can waste. 0 = choose among connected members only.",
    )
    max_publish_per_second: float = Field(
        5.0, gt=0, le=100_000, description="Own envelopes sent per second at most (paces bursts)."
    )
    limits: LimitsSection = Field(default_factory=LimitsSection)
    rate: RateLimitSection = Field(default_factory=RateLimitSection)
    admission: AdmissionSection = Field(default_factory=AdmissionSection)
    pool: PoolSection = Field(default_factory=PoolSection)
    grpc: GrpcSection = Field(default_factory=GrpcSection)

    @field_validator("max_pending_handshakes_per_address")
    @classmethod
    def _share_within_total(cls, value: int, info: ValidationInfo) -> int:
        total = info.data.get("max_pending_handshakes")
        if total is not None and value > total:
            raise InvalidValue(f"must be at most max_pending_handshakes ({total})")
        return value
