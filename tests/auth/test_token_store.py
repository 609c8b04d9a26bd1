"""The encrypted token and pending-sign-in rows on Azurite: ETag concurrency, take-once, purging."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import UpdateMode
from cryptography.fernet import Fernet

from connector.auth.crypto import SealedDataError, TokenCipher
from connector.auth.token_store import AuthFlowStore, PendingSignIn, StoredCache, TokenStore, tokens_stored
from connector.settings import TABLE_AUTH_FLOWS, TABLE_TOKENS
from tests.conftest import TEST_ENCRYPTION_KEY

CIPHER = TokenCipher([TEST_ENCRYPTION_KEY])
CACHE = '{"RefreshToken":{"k":{"secret":"rt-plaintext"}}}'


def test_cache_is_stored_encrypted_and_loads_back(runtime: Any) -> None:
    store = TokenStore(runtime.storage, CIPHER)
    assert not tokens_stored(runtime.storage, "default")
    etag = store.save("default", CACHE, None)
    assert etag and tokens_stored(runtime.storage, "default")
    raw = str(list(runtime.storage.table(TABLE_TOKENS).list_entities()))
    assert "rt-plaintext" not in raw and "RefreshToken" not in raw
    loaded = store.load("default")
    assert loaded is not None and (loaded.state, loaded.etag) == (CACHE, etag)


def test_saving_over_a_cache_changed_since_it_was_loaded_is_refused(runtime: Any) -> None:
    store = TokenStore(runtime.storage, CIPHER)
    first = store.save("default", CACHE, None)
    assert store.save("default", CACHE, None) is None  # created meanwhile by another instance
    newer = store.save("default", '{"newer": true}', first)
    assert newer is not None
    assert store.save("default", '{"stale": true}', first) is None
    assert not store.discard("default", first)
    assert store.load("default").state == '{"newer": true}'
    assert store.discard("default", newer) and store.load("default") is None


def test_cache_copied_to_another_connection_does_not_open(runtime: Any) -> None:
    store = TokenStore(runtime.storage, CIPHER)
    store.save("default", CACHE, None)
    table = runtime.storage.table(TABLE_TOKENS)
    row = dict(table.get_entity("default", "cache"))
    table.create_entity({**row, "PartitionKey": "emea"})
    with pytest.raises(SealedDataError):
        store.load("emea")


def pending(minutes: float) -> PendingSignIn:
    return PendingSignIn("default", {"state": "s", "code_verifier": "v"},
                         datetime.now(UTC) + timedelta(minutes=minutes))


def test_pending_sign_in_is_taken_once(runtime: Any) -> None:
    flows = AuthFlowStore(runtime.storage, CIPHER)
    flows.put("state-1", pending(10))
    taken = flows.take("state-1")
    assert taken is not None and taken.flow["code_verifier"] == "v" and taken.connection == "default"
    assert flows.take("state-1") is None
    assert flows.take("never-started") is None and flows.take("x" * 1000) is None


def test_sign_ins_left_long_enough_are_purged_when_the_next_one_starts(runtime: Any) -> None:
    flows = AuthFlowStore(runtime.storage, CIPHER, purge_after=timedelta(seconds=-60))
    flows.put("abandoned", pending(-5))
    flows.put("current", pending(10))
    keys = {e["PartitionKey"] for e in runtime.storage.table(TABLE_AUTH_FLOWS).list_entities()}
    assert keys == {"current"}


def test_a_cache_sealed_with_an_old_key_is_re_encrypted_with_the_first_as_it_is_read(runtime: Any) -> None:
    old_key, new_key = TEST_ENCRYPTION_KEY, Fernet.generate_key().decode()
    TokenStore(runtime.storage, TokenCipher([old_key])).save("default", "the-cache", None)
    rotated = TokenStore(runtime.storage, TokenCipher([new_key, old_key]))  # new key put first
    loaded = rotated.load("default")
    assert loaded is not None and loaded.state == "the-cache"
    only_new = TokenStore(runtime.storage, TokenCipher([new_key]))  # the old key may go now
    assert only_new.load("default") == loaded  # same cache, and the ETag of the re-sealed row
    with pytest.raises(SealedDataError):
        TokenStore(runtime.storage, TokenCipher([old_key])).load("default")


def test_a_cache_sealed_with_the_first_key_is_not_rewritten_on_read(runtime: Any) -> None:
    store = TokenStore(runtime.storage, CIPHER)
    etag = store.save("default", "the-cache", None)
    assert store.load("default") == StoredCache("the-cache", str(etag))


def test_a_pending_sign_in_keeps_its_connection_and_expiry_sealed(runtime: Any) -> None:
    AuthFlowStore(runtime.storage, CIPHER).put("state-9", pending(10))
    [row] = runtime.storage.table(TABLE_AUTH_FLOWS).list_entities()
    assert set(row) == {"PartitionKey", "RowKey", "sealed"}
    assert "default" not in row["sealed"]


# ---- versioned rows bound to the deployment (issue 20) -------------------------------------------

def test_a_token_row_rolled_back_to_an_older_copy_is_refused(runtime: Any) -> None:
    store = TokenStore(runtime.storage, CIPHER)
    table = runtime.storage.table(TABLE_TOKENS)
    first = store.save("default", '{"old": "revoked refresh token"}', None)
    old_row = dict(table.get_entity("default", "cache"))
    store.save("default", CACHE, first)  # a newer cache (rotated refresh token)
    assert store.load("default").state == CACHE

    table.upsert_entity(old_row, mode=UpdateMode.REPLACE)  # someone with table write puts the old row back
    with pytest.raises(SealedDataError, match="rolled back"):
        store.load("default")


def test_an_old_seal_under_the_current_version_number_is_refused(runtime: Any) -> None:
    """A fresh instance has seen no version yet: the seal's own version must still be the row's."""
    store = TokenStore(runtime.storage, CIPHER)
    table = runtime.storage.table(TABLE_TOKENS)
    first = store.save("default", '{"old": true}', None)
    old_seal = table.get_entity("default", "cache")["cache"]
    store.save("default", CACHE, first)
    current = dict(table.get_entity("default", "cache"))
    table.upsert_entity({**current, "cache": old_seal}, mode=UpdateMode.REPLACE)
    with pytest.raises(SealedDataError, match="copied or rolled back"):
        TokenStore(runtime.storage, CIPHER).load("default")


def test_a_token_row_moved_from_another_deployment_does_not_open(runtime: Any) -> None:
    """Same key, same connection name, another storage account: the seal is bound to the account."""
    TokenStore(runtime.storage, CIPHER, deployment="staging-account").save("default", CACHE, None)
    with pytest.raises(SealedDataError):
        TokenStore(runtime.storage, CIPHER).load("default")  # this deployment: devstoreaccount1
    assert runtime.storage.account_name == "devstoreaccount1"


def test_a_row_from_before_versions_opens_once_and_is_resealed_versioned(runtime: Any) -> None:
    table = runtime.storage.table(TABLE_TOKENS)
    table.create_entity({"PartitionKey": "default", "RowKey": "cache",
                         "cache": CIPHER.seal(CACHE, "tokens:default")})  # as main sealed it before
    store = TokenStore(runtime.storage, CIPHER)
    assert store.load("default").state == CACHE
    row = table.get_entity("default", "cache")
    assert int(row["version"]) > 0 and TokenStore(runtime.storage, CIPHER).load("default").state == CACHE
    table.upsert_entity({"PartitionKey": "default", "RowKey": "cache",
                         "cache": CIPHER.seal(CACHE, "tokens:default")}, mode=UpdateMode.REPLACE)
    with pytest.raises(SealedDataError):  # back to the unversioned form after this instance saw versions
        store.load("default")
