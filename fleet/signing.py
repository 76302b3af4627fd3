"""The fleet's Ed25519 signing key: the trust anchor gateways receive at enrollment.

The private key lives in one PEM file created with mode 0600 and is never sent anywhere;
gateways get the raw public key as base64. Also verifies the proof-of-possession a
gateway sends when it enrolls.
"""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.credentials import create_private_file

KEY_FILE_NAME = "signing_key.pem"


class SigningKey:
    """The fleet's signing key pair, loaded from (or created in) a data directory."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKey:
        """Load ``data_dir/signing_key.pem``, creating it (mode 0600) on first use."""
        path = data_dir / KEY_FILE_NAME
        if not path.exists():
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            create_private_file(path, pem)  # if another process won the race, use its key
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            msg = f"{path}: not an Ed25519 private key"
            raise TypeError(msg)
        return cls(key)

    @property
    def public_key_b64(self) -> str:
        """The raw 32-byte public key as standard base64 (what gateways pin)."""
        raw = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()

    def sign(self, message: bytes) -> str:
        """Sign ``message``; the signature as standard base64."""
        return base64.b64encode(self._private.sign(message)).decode()
