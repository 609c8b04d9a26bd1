"""The emulator's Key Vault secrets endpoint, read raw and through the real azure-keyvault-secrets SDK
(the connector's `SecretResolver`, signed in with the emulated managed identity)."""
from __future__ import annotations

from typing import Any

import pytest
import requests

from connector.keyvault import (
    BadReference,
    SecretResolver,
    SecretUnavailable,
    parse_reference,
    reference_text,
)
from devtools.emulator.config import IDENTITY_HEADER


@pytest.fixture
def resolver(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> SecretResolver:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{emulator.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    return SecretResolver(ttl=3600, host=emulator.url, verify=emulator.ca_bundle)


def test_without_a_token_key_vault_answers_its_bearer_challenge(emulator):
    emulator.keyvault.set_secret("kv-test", "raw", "v1")
    url = f"{emulator.url}/keyvault/kv-test/secrets/raw"
    answer = requests.get(url, params={"api-version": "7.6"}, verify=emulator.ca_bundle, timeout=10)
    assert answer.status_code == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer authorization="')
    assert 'resource="https://vault.azure.net"' in challenge
    assert answer.json()["error"]["code"] == "Unauthorized"
    assert requests.get(url, verify=emulator.ca_bundle, timeout=10).status_code == 400  # no api-version


def test_the_sdk_reads_a_secret_with_the_managed_identity_and_the_resolver_caches_it(emulator, resolver):
    emulator.keyvault.set_secret("kv-test", "shop-secret", "first")
    ref = reference_text("kv-test", "shop-secret")
    assert resolver.resolve(ref) == "first"
    reads = emulator.keyvault.reads
    assert resolver.resolve(ref) == "first" and emulator.keyvault.reads == reads  # from the cache
    emulator.keyvault.set_secret("kv-test", "shop-secret", "second")  # rotated
    assert resolver.resolve(ref) == "first"  # until the TTL ends or it is forgotten
    resolver.forget([ref])
    assert resolver.resolve(ref) == "second"


def test_a_pinned_version_and_the_other_syntax(emulator, resolver):
    version = emulator.keyvault.set_secret("kv-test", "pinned", "old")
    emulator.keyvault.set_secret("kv-test", "pinned", "new")
    pinned = f"@Microsoft.KeyVault(VaultName=kv-test;SecretName=pinned;SecretVersion={version})"
    assert resolver.resolve(pinned) == "old"
    current = "@Microsoft.KeyVault(SecretUri=https://kv-test.vault.azure.net/secrets/pinned/)"
    assert resolver.resolve(current) == "new"


def test_a_missing_secret_or_a_denied_identity_is_a_clear_error(emulator, resolver):
    with pytest.raises(SecretUnavailable, match="kv-test/nope: no such secret"):
        resolver.resolve(reference_text("kv-test", "nope"))
    emulator.keyvault.set_secret("kv-test", "guarded", "x")
    emulator.keyvault.readers = set()
    try:
        with pytest.raises(SecretUnavailable, match="access denied"):
            resolver.resolve(reference_text("kv-test", "guarded"))
    finally:
        emulator.keyvault.readers = None


def test_references_are_parsed_in_app_services_syntax():
    by_uri = "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/mysecret/)"
    by_name = "@Microsoft.KeyVault(VaultName=myvault;SecretName=mysecret)"
    assert parse_reference(by_uri) == parse_reference(by_name)
    ref = parse_reference("@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/s/"
                          "ec96f02080254f109c51a1f14cdb1931)")
    assert (ref.vault, ref.name, ref.version) == ("myvault", "s", "ec96f02080254f109c51a1f14cdb1931")
    for bad in ("plaintext", "@Microsoft.KeyVault(SecretUri=https://evil.example.com/secrets/s)",
                "@Microsoft.KeyVault(VaultName=v)", "@Microsoft.KeyVault(SecretUri=http://v1.vault.azure.net/secrets/s)"):
        with pytest.raises(BadReference):
            parse_reference(bad)
