"""libp2p peer ids of ed25519 keys, without importing libp2p (a gossip-free node stays small).

A libp2p peer id of an ed25519 key is the *identity multihash* of the protobuf-encoded public key
(``KeyType=Ed25519 (1)``, ``Data=<32 bytes>``), written in base58btc: ``12D3KooW...``. The public key is
inside the id, so a receiver verifies a signature from the sender id alone. ``tests/unit/swarm`` checks that
these functions agree with ``libp2p.peer.id.ID``.
"""

from __future__ import annotations

from swarmrl.errors import ProtocolError

ED25519_PUBLIC_KEY_BYTES = 32
# identity multihash (code 0x00, length 36) + protobuf PublicKey{Type: 1 (varint), Data: 32 bytes}
_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, ED25519_PUBLIC_KEY_BYTES])
PEER_ID_BYTES = len(_PREFIX) + ED25519_PUBLIC_KEY_BYTES

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {ch: i for i, ch in enumerate(_ALPHABET)}
#: Longest base58 text accepted by ``from_base58`` (a 38-byte id is 52 characters).
_MAX_TEXT = 64


def b58encode(data: bytes) -> str:
    """base58btc text of ``data`` (leading zero bytes become '1')."""
    num = int.from_bytes(data, "big")
    out = []
    while num:
        num, rem = divmod(num, 58)
        out.append(_ALPHABET[rem])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Bytes of base58btc ``text``; raises ProtocolError('malformed') on foreign characters or excess length."""
    if len(text) > _MAX_TEXT:
        raise ProtocolError("malformed", f"base58 text longer than {_MAX_TEXT} characters")
    num = 0
    for ch in text:
        digit = _INDEX.get(ch)
        if digit is None:
            raise ProtocolError("malformed", f"character {ch!r} is not base58")
        num = num * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * zeros + body


def peer_id_bytes(public_key: bytes) -> bytes:
    """Binary peer id (identity multihash) of a raw 32-byte ed25519 public key."""
    if len(public_key) != ED25519_PUBLIC_KEY_BYTES:
        raise ProtocolError("malformed", f"ed25519 public key must be 32 bytes, got {len(public_key)}")
    return _PREFIX + public_key


def public_key_of(peer_id: bytes) -> bytes:
    """The raw ed25519 public key inside a binary peer id; ProtocolError('malformed') for other ids."""
    if len(peer_id) != PEER_ID_BYTES or not peer_id.startswith(_PREFIX):
        raise ProtocolError("malformed", "sender is not an ed25519 identity peer id")
    return peer_id[len(_PREFIX) :]


def to_text(peer_id: bytes) -> str:
    """Base58 text form of a binary peer id (what logs, configs and allowlists use)."""
    return b58encode(peer_id)


def from_text(text: str) -> bytes:
    """Binary form of a base58 ed25519 peer id; ProtocolError('malformed') if it is not one."""
    raw = b58decode(text.strip())
    public_key_of(raw)
    return raw
