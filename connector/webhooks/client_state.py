"""Webhook clientStates: derived, never stored, so reading the subscription table alone is not enough
to forge a notification.

A subscription row keeps a random nonce; its clientState is HMAC-SHA256(K, nonce) where K is derived
from TOKEN_ENCRYPTION_KEY with HKDF (`cryptography`), so the Fernet key itself is never used as an
HMAC key. Without TOKEN_ENCRYPTION_KEY no subscription can be made or verified
(`MissingClientStateKey`). Every configured key is accepted. Key rotation: add the new key first
(`new,old`); the row records which key its clientState came from (`client_state_key`, a non-secret
key id), and the next subscription run renews every subscription signed with a key that is no longer
first, so the old key can be removed once that run has succeeded. Rows signed before HKDF (HMAC keyed
with the Fernet key itself) carry a `legacy_key_id`: they are still verified that way and renewed on
the next run, like a rotated key.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from connector.errors import ConnectorError

_INFO = b"bc-connector webhook clientState v2"


class MissingClientStateKey(ConnectorError, RuntimeError):
    """TOKEN_ENCRYPTION_KEY is not set, so no clientState can be derived (nor a notification checked)."""

    internal = True  # the app is misconfigured, not the request: a route answers 500


def derived_key(key: str) -> bytes:
    """The clientState HMAC key: HKDF-SHA256 of TOKEN_ENCRYPTION_KEY, bound to this purpose."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key.encode())


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def client_state(key: str, nonce: str) -> str:
    """The clientState of a subscription: HMAC-SHA256(HKDF(key), nonce), urlsafe base64 (43 chars)."""
    digest = _mac(derived_key(key), b"bc-webhook-client-state\x1f" + nonce.encode())
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def key_id(key: str) -> str:
    """A short, non-secret name of a key: which key a row's clientState was derived from."""
    return _mac(derived_key(key), b"bc-webhook-key-id").hex()[:16]


def legacy_client_state(key: str, nonce: str) -> str:
    """The clientState of a row signed before HKDF (HMAC keyed with TOKEN_ENCRYPTION_KEY itself)."""
    digest = _mac(key.encode(), b"bc-webhook-client-state\x1f" + nonce.encode())
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def legacy_key_id(key: str) -> str:
    """The key id such a row records."""
    return _mac(key.encode(), b"bc-webhook-key-id").hex()[:16]


def accepted_states(keys: tuple[str, ...], nonce: str, row_key_id: str) -> tuple[str, ...]:
    """The clientStates a row's notifications may carry: by every key, the pre-HKDF way only for a
    row that records a pre-HKDF key id."""
    legacy = row_key_id in {legacy_key_id(k) for k in keys}
    return tuple((legacy_client_state if legacy else client_state)(k, nonce) for k in keys)


def signing_key(keys: tuple[str, ...]) -> str:
    """The key new clientStates are derived from: the first of TOKEN_ENCRYPTION_KEY."""
    if not keys:
        raise MissingClientStateKey("TOKEN_ENCRYPTION_KEY is not set: webhook clientStates are derived "
                                    "from it, so no subscription can be created, renewed or verified")
    return keys[0]
