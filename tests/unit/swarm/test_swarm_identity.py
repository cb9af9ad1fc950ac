"""Identity key files: created 0600, reloaded with the same peer id, unsafe or bad files refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from swarmrl.errors import IdentityError
from swarmrl.protocol import envelope as wire
from swarmrl.swarm.identity import Identity


def test_created_with_mode_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "identity.key"
    first = Identity.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = Identity.load_or_create(path)
    assert second.peer_id == first.peer_id
    assert second.peer_id_text.startswith("12D3KooW")
    assert not (tmp_path / "keys" / "identity.key.tmp").exists()


def test_peer_id_equals_libp2p_peer_id(tmp_path: Path) -> None:
    pytest.importorskip("libp2p")
    from libp2p.peer.id import ID

    ident = Identity.load_or_create(tmp_path / "id.key")
    keypair = ident.libp2p_keypair()
    assert keypair.public_key.to_bytes() == ident.public_key_bytes()
    libp2p_id = ID.from_pubkey(keypair.public_key)
    assert libp2p_id.to_base58() == ident.peer_id_text
    assert libp2p_id.to_bytes() == ident.peer_id
    # a signature made with libp2p's copy of the key verifies as ours
    data = b"hello"
    assert keypair.private_key.sign(data) == ident.sign(data)


def test_world_readable_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    Identity.load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        Identity.load(path)


def test_garbage_and_wrong_key_types_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "id.key"
    path.write_bytes(b"not a key")
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="not an unencrypted PEM"):
        Identity.load_or_create(path)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    with pytest.raises(IdentityError, match="not an ed25519 key"):
        Identity.load(path)
    with pytest.raises(IdentityError, match="cannot read"):
        Identity.load(tmp_path / "missing.key")


def test_identity_signs_envelopes_that_verify() -> None:
    ident = Identity.generate()
    env = wire.open_envelope(wire.seal(ident, "s", 1, b"", 0), wire.Limits())
    wire.verify_envelope(env)
