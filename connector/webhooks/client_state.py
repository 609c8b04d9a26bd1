"""Webhook clientStates: derived, never stored, so reading the subscription table alone is not enough
to forge a notification.

A subscription row keeps a random nonce; its clientState is HMAC-SHA256(TOKEN_ENCRYPTION_KEY, nonce).
Without TOKEN_ENCRYPTION_KEY no subscription can be made or verified (`MissingClientStateKey`). Every
configured key is accepted. Key rotation: add the new key first (`new,old`); the row records which key
its clientState came from (`client_state_key`, a non-secret key id), and the next subscription run
renews every subscription signed with a key that is no longer first, so the old key can be removed
once that run has succeeded.
"""
from __future__ import annotations

import base64
import hashlib
import hmac


class MissingClientStateKey(RuntimeError):
    """TOKEN_ENCRYPTION_KEY is not set, so no clientState can be derived (nor a notification checked)."""


def client_state(key: str, nonce: str) -> str:
    """The clientState of a subscription: HMAC-SHA256(key, nonce), urlsafe base64 (43 chars)."""
    digest = hmac.new(key.encode(), b"bc-webhook-client-state\x1f" + nonce.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def key_id(key: str) -> str:
    """A short, non-secret name of a key: which key a row's clientState was derived from."""
    return hmac.new(key.encode(), b"bc-webhook-key-id", hashlib.sha256).hexdigest()[:16]


def signing_key(keys: tuple[str, ...]) -> str:
    """The key new clientStates are derived from: the first of TOKEN_ENCRYPTION_KEY."""
    if not keys:
        raise MissingClientStateKey("TOKEN_ENCRYPTION_KEY is not set: webhook clientStates are derived "
                                    "from it, so no subscription can be created, renewed or verified")
    return keys[0]
