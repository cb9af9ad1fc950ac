"""Validation of push-protocol control frames (HELLO, PEERS bodies): bounded, typed, or ``MalformedFrame``."""

from __future__ import annotations

import json

import multiaddr
from libp2p.peer.id import ID

from swarmrl.errors import SwarmRLError

MAX_ADDRS_PER_PEER = 8
_MAX_ADDR_CHARS = 300


class MalformedFrame(SwarmRLError):
    """A peer sent a frame that breaks the push protocol (the stream is reset)."""


def valid_addrs(peer: str, raw: object) -> tuple[str, ...]:
    """The dialable TCP multiaddrs of ``peer`` in ``raw`` (anything else is a malformed frame)."""
    if not isinstance(raw, list) or len(raw) > MAX_ADDRS_PER_PEER:
        raise MalformedFrame("addrs must be a short list")
    out: list[str] = []
    suffix = f"/p2p/{peer}"
    for text in raw:
        if not isinstance(text, str) or len(text) > _MAX_ADDR_CHARS:
            raise MalformedFrame("an address must be a short string")
        if not text.endswith(suffix) or "/tcp/" not in text:
            continue  # someone else's or a non-TCP address: not ours to dial
        try:
            multiaddr.Multiaddr(text)
        except Exception as exc:
            raise MalformedFrame(f"bad multiaddr {text[:80]!r}") from exc
        out.append(text)
    return tuple(out)


def valid_peer_id(text: object) -> tuple[str, ID]:
    if not isinstance(text, str) or len(text) > 128:
        raise MalformedFrame("peer id must be a short string")
    try:
        return text, ID.from_base58(text)
    except Exception as exc:
        raise MalformedFrame(f"bad peer id {text[:60]!r}") from exc


def json_body(body: bytes) -> dict[str, object]:
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise MalformedFrame("control frame is not JSON") from exc
    if not isinstance(obj, dict):
        raise MalformedFrame("control frame must be a JSON object")
    return obj
