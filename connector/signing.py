"""HMAC signatures the connector gives itself (sign-in links, the messages of its own queues).

Each purpose has its own key, derived from TOKEN_ENCRYPTION_KEY with HKDF (as the webhook clientState
is), so the Fernet key itself is never an HMAC key and a signature for one purpose is worthless for
another. Every configured key verifies; the first signs (rotation: `new,old`). A message the connector
queues for itself (`bc-notifications`, `bc-item-pulls`) ends with `"sig"`, the HMAC of the JSON before
it (`seal_json` / `open_json`), so anyone else with write on the queue cannot inject work.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from connector.errors import ConnectorError


class MissingSigningKey(ConnectorError, RuntimeError):
    """TOKEN_ENCRYPTION_KEY is not set, so nothing can be signed or verified."""

    internal = True


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

    @property
    def keys(self) -> int:
        """How many keys verify (0: nothing can be signed)."""
        return len(self._keys)

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


SIGNATURE_FIELD = "sig"
_SIGNED_TAIL = re.compile(r',"sig":"([A-Za-z0-9_-]{43})"\}$')


class UnsignedMessage(ConnectorError, ValueError):
    """A message on an internal queue that is unsigned or whose signature does not hold."""

    retryable = False
    internal = True


def queue_signer(keys: Sequence[str], queue: str) -> Signer:
    """The signer of the messages the connector writes to its own queue `queue`."""
    return Signer(keys, f"internal queue {queue}")


def seal_json(signer: Signer, text: str) -> str:
    """`text` (a non-empty JSON object) with `"sig"` last: the HMAC of `text` as it was. Without a
    key (no TOKEN_ENCRYPTION_KEY) the text goes unsigned, and `open_json` accepts it."""
    if not signer.keys:
        return text
    if not text.endswith("}") or text[:-1].rstrip().endswith("{"):
        raise ValueError("only a non-empty JSON object can be sealed")
    return f'{text[:-1]},"{SIGNATURE_FIELD}":"{signer.sign(text.encode())}"}}'


def open_json(signer: Signer, text: str) -> str:
    """The text `seal_json` signed, or UnsignedMessage naming why not (unsigned; forged or altered)."""
    if not signer.keys:
        return text
    found = _SIGNED_TAIL.search(text)
    if found is None:
        raise UnsignedMessage(f"unsigned: a message on this queue must carry the connector's "
                              f"signature ({signer.purpose})")
    original = text[:found.start()] + "}"
    try:
        payload = original.encode()
    except UnicodeEncodeError:
        payload = b""
    if not payload or not signer.verify(payload, found.group(1)):
        raise UnsignedMessage(f"forged or altered: its signature does not match ({signer.purpose})")
    return original
