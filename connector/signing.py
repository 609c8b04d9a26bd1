"""HMAC signatures the connector gives itself (sign-in links, its own queue messages).

Each purpose has its own key, derived from TOKEN_ENCRYPTION_KEY with HKDF (as the webhook clientState
is), so the Fernet key itself is never an HMAC key and a signature for one purpose is worthless for
another. Every configured key verifies; the first signs (rotation: `new,old`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class MissingSigningKey(RuntimeError):
    """TOKEN_ENCRYPTION_KEY is not set, so nothing can be signed or verified."""


def purpose_key(secret: str, purpose: str) -> bytes:
    """HKDF-SHA256 of `secret`, bound to `purpose`."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"bc-connector {purpose} v1".encode()).derive(secret.encode())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    """urlsafe base64 without padding; ValueError when it is not."""
    if not text.isascii():
        raise ValueError("not base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 for one purpose: `sign` with the first key, `verify` against every key."""

    def __init__(self, secrets: Sequence[str], purpose: str):
        self._keys = [purpose_key(s, purpose) for s in secrets if s]
        self.purpose = purpose

    def sign(self, payload: bytes) -> str:
        if not self._keys:
            raise MissingSigningKey(f"TOKEN_ENCRYPTION_KEY is not set: cannot sign {self.purpose}")
        return b64(hmac.new(self._keys[0], payload, hashlib.sha256).digest())

    def verify(self, payload: bytes, signature: str) -> bool:
        """Whether `signature` is a signature of `payload` by any configured key (constant time)."""
        if not isinstance(signature, str) or not signature.isascii():
            return False
        given = signature.encode()
        return any(hmac.compare_digest(b64(hmac.new(k, payload, hashlib.sha256).digest()).encode(), given)
                   for k in self._keys)
