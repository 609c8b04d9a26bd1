"""Encryption at rest for token caches and pending sign-ins (they hold refresh tokens and PKCE verifiers).

Fernet from `cryptography` (AES-128-CBC + HMAC-SHA256, timestamped, versioned) rather than raw AES-GCM:
authenticated by default and `MultiFernet` gives key rotation for free. `TOKEN_ENCRYPTION_KEY` holds
one or more keys separated by commas; the first encrypts, any of them decrypts, so an operator puts a
new key first and drops the old one once every row has been rewritten: a token cache opened with an
old key is re-encrypted with the first key as it is read (`sealed_with_old_key`).

Each sealed value is bound to a purpose (e.g. `tokens:default`), so a row copied under another key
(another connection's tokens, another sign-in's state) does not open.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from connector.errors import ConnectorError
from connector.settings import Settings, SettingsError

GENERATE_HINT = (
    "generate one with: python -c \"from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())\""
)


class SealedDataError(ConnectorError):
    """A sealed value cannot be opened: wrong or retired key, tampered, or sealed for another purpose."""

    internal = True


class TokenCipher:
    """Seals and opens strings with the configured Fernet keys."""

    def __init__(self, keys: Sequence[str]):
        if not keys:
            raise SettingsError(f"TOKEN_ENCRYPTION_KEY is not set; {GENERATE_HINT}")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip()))
            except ValueError:
                raise SettingsError(
                    f"TOKEN_ENCRYPTION_KEY: key {position} of {len(keys)} is not a Fernet key "
                    f"(32 bytes, url-safe base64); {GENERATE_HINT}"
                ) from None
        self._fernet = MultiFernet(fernets)
        self._current = fernets[0]

    def seal(self, plaintext: str, purpose: str) -> str:
        """Encrypt `plaintext` with the first key, bound to `purpose`."""
        envelope = json.dumps({"for": purpose, "data": plaintext}, separators=(",", ":"))
        return self._fernet.encrypt(envelope.encode()).decode("ascii")

    def open(self, sealed: str, purpose: str) -> str:
        """Decrypt with any configured key; raises SealedDataError if that fails or the purpose differs."""
        try:
            envelope = json.loads(self._fernet.decrypt(sealed.encode("ascii")))
        except (InvalidToken, ValueError, UnicodeError):
            raise SealedDataError(
                f"{purpose}: cannot be decrypted with the configured TOKEN_ENCRYPTION_KEY"
            ) from None
        if not isinstance(envelope, dict) or envelope.get("for") != purpose:
            raise SealedDataError(f"{purpose}: the stored value belongs to something else")
        return str(envelope.get("data", ""))

    def sealed_with_old_key(self, sealed: str) -> bool:
        """Whether a value that opens was sealed with a key other than the first (re-seal it)."""
        try:
            self._current.decrypt(sealed.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return True
        return False


def cipher_for(settings: Settings, why: str) -> TokenCipher:
    """The cipher from TOKEN_ENCRYPTION_KEY; a missing or malformed key raises SettingsError saying `why`
    it is needed."""
    try:
        return TokenCipher(settings.token_encryption_keys)
    except SettingsError as exc:
        raise SettingsError(f"{exc} (needed because {why})") from None
