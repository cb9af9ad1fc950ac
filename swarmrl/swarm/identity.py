"""A node's ed25519 identity: one key file that names the node everywhere (envelopes, gRPC, libp2p).

The key is stored as unencrypted PKCS#8 PEM with mode 0600; it is created on first use and loaded after.
A file that others can read, or that is not an ed25519 key, is refused with a message that says what to
do. The peer id is the libp2p peer id of the same key (see ``swarmrl.protocol.peerid``), so the libp2p
transport and the envelope signatures name a node identically.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from swarmrl.errors import IdentityError
from swarmrl.protocol import peerid


class Identity:
    """An ed25519 private key with its libp2p peer id. Implements ``swarmrl.protocol.envelope.Signer``."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._peer_id = peerid.peer_id_bytes(raw_public)
        self._peer_id_text = peerid.to_text(self._peer_id)

    @classmethod
    def generate(cls) -> Identity:
        """A fresh in-memory identity (tests, simulations)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> Identity:
        """Load the key at ``path``, or create it there (mode 0600, parent made 0700) if it is missing."""
        if path.exists():
            return cls.load(path)
        identity = cls.generate()
        identity.save(path)
        return identity

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Load an existing key file; raise IdentityError if it is unsafe or not an ed25519 PEM key."""
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise IdentityError(f"cannot read identity key '{path}': {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise IdentityError(f"identity key '{path}' is not a regular file; remove it to create a new key")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(
                f"identity key '{path}' is accessible by other users (mode {stat.S_IMODE(mode):o}); "
                f"run `chmod 600 {path}`"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise IdentityError(
                f"identity key '{path}' is not an unencrypted PEM private key ({exc}); "
                "move it away to let the node create a new identity"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"identity key '{path}' is a {type(key).__name__}, not an ed25519 key")
        return cls(key)

    def save(self, path: Path) -> None:
        """Write the key atomically with mode 0600 (never readable by others, even for an instant)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    @property
    def peer_id(self) -> bytes:
        """Binary peer id (identity multihash of the public key), as carried in ``Envelope.sender``."""
        return self._peer_id

    @property
    def peer_id_text(self) -> str:
        """Base58 peer id (``12D3KooW...``), as shown in logs, configs and allowlists."""
        return self._peer_id_text

    def public_key_bytes(self) -> bytes:
        return peerid.public_key_of(self._peer_id)

    def private_key_seed(self) -> bytes:
        """The 32-byte ed25519 seed (for handing the same key to libp2p; keep it secret)."""
        return self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def libp2p_keypair(self) -> Any:
        """The same key as a ``libp2p.crypto.keys.KeyPair`` (imports libp2p, which is heavy, on use)."""
        from libp2p.crypto.ed25519 import create_new_key_pair

        return create_new_key_pair(self.private_key_seed())

    def __repr__(self) -> str:
        return f"Identity({self._peer_id_text})"
