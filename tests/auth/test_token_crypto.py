"""Token encryption at rest: Fernet keys, rotation, purpose binding, clear configuration errors."""
from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from connector.auth.crypto import SealedDataError, TokenCipher, cipher_for
from connector.settings import SettingsError, load_settings

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def test_sealed_value_opens_with_the_same_key_and_hides_the_plaintext() -> None:
    cipher = TokenCipher([OLD])
    sealed = cipher.seal('{"RefreshToken": "rt-secret"}', "tokens:default")
    assert "rt-secret" not in sealed and "RefreshToken" not in sealed
    assert cipher.open(sealed, "tokens:default") == '{"RefreshToken": "rt-secret"}'


def test_new_key_first_still_opens_values_sealed_with_the_old_key() -> None:
    sealed_before = TokenCipher([OLD]).seal("cache", "tokens:default")
    rotated = TokenCipher([NEW, OLD])
    assert rotated.open(sealed_before, "tokens:default") == "cache"
    sealed_after = rotated.seal("cache", "tokens:default")
    assert TokenCipher([NEW]).open(sealed_after, "tokens:default") == "cache"
    with pytest.raises(SealedDataError):
        TokenCipher([OLD]).open(sealed_after, "tokens:default")


def test_value_sealed_for_one_connection_does_not_open_for_another() -> None:
    cipher = TokenCipher([OLD])
    sealed = cipher.seal("cache", "tokens:default")
    with pytest.raises(SealedDataError, match="belongs to something else"):
        cipher.open(sealed, "tokens:emea")


def test_tampered_or_foreign_values_do_not_open() -> None:
    cipher = TokenCipher([OLD])
    sealed = cipher.seal("cache", "tokens:default")
    for bad in (sealed[:-4] + "AAAA", "not-a-fernet-token", TokenCipher([NEW]).seal("x", "tokens:default")):
        with pytest.raises(SealedDataError):
            cipher.open(bad, "tokens:default")


def test_missing_key_names_the_setting_and_why_it_is_needed() -> None:
    settings = load_settings({"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s"})
    with pytest.raises(SettingsError, match="TOKEN_ENCRYPTION_KEY is not set.*because connection 'default'"):
        cipher_for(settings, "connection 'default' signs in with authorization_code")


def test_malformed_key_is_reported_by_position_without_echoing_it() -> None:
    with pytest.raises(SettingsError) as caught:
        TokenCipher([NEW, "hunter2-not-a-key"])
    assert "key 2 of 2" in str(caught.value)
    assert "hunter2" not in str(caught.value)
