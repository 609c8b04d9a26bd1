"""The clientState HMAC key is derived with HKDF from TOKEN_ENCRYPTION_KEY, never the Fernet key
itself (issue 11 point 8); subscriptions signed the old way keep working until the next run renews
them with the derived key."""
from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from connector.runtime import get_runtime
from connector.settings import QUEUE_ITEMS, TABLE_SUBSCRIPTIONS
from connector.webhooks import subscriptions
from connector.webhooks.client_state import (
    accepted_states,
    client_state,
    key_id,
    legacy_client_state,
    legacy_key_id,
)
from tests.conftest import TEST_ENCRYPTION_KEY

SETS = ["items", "salesInvoices", "salesShipments"]


def test_the_client_state_is_an_hmac_under_an_hkdf_derived_key_not_the_fernet_key() -> None:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"bc-connector webhook clientState v2").derive(TEST_ENCRYPTION_KEY.encode())
    mac = hmac.new(derived, b"bc-webhook-client-state\x1fn1", hashlib.sha256).digest()
    assert client_state(TEST_ENCRYPTION_KEY, "n1") == base64.urlsafe_b64encode(mac).decode().rstrip("=")
    assert client_state(TEST_ENCRYPTION_KEY, "n1") != legacy_client_state(TEST_ENCRYPTION_KEY, "n1")
    assert key_id(TEST_ENCRYPTION_KEY) != legacy_key_id(TEST_ENCRYPTION_KEY)


def test_a_row_accepts_the_old_derivation_only_when_it_records_an_old_key_id() -> None:
    keys = (TEST_ENCRYPTION_KEY,)
    assert accepted_states(keys, "n", legacy_key_id(TEST_ENCRYPTION_KEY)) == (
        legacy_client_state(TEST_ENCRYPTION_KEY, "n"),)
    assert accepted_states(keys, "n", key_id(TEST_ENCRYPTION_KEY)) == (
        client_state(TEST_ENCRYPTION_KEY, "n"),)


@pytest.mark.e2e
def test_subscriptions_signed_the_old_way_keep_working_and_the_next_run_re_signs_them(
        scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    s = scenario()
    with monkeypatch.context() as old_release:  # as the connector signed before HKDF
        old_release.setattr(subscriptions, "client_state", legacy_client_state)
        old_release.setattr(subscriptions, "key_id", legacy_key_id)
        assert sorted(s.subscribe()["created"]) == SETS
    item = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == item["id"] for e in es))
    assert sorted(s.subscribe()["renewed"]) == SETS
    table = get_runtime().storage.table(TABLE_SUBSCRIPTIONS)
    by_set = {sub["resource"].rsplit("/", 1)[-1]: sub for sub in s.bc.subscriptions(s.notification_url)}
    for row in table.list_entities():
        assert row["client_state_key"] == key_id(TEST_ENCRYPTION_KEY)
        assert by_set[row["entity_set"]]["clientState"] == client_state(TEST_ENCRYPTION_KEY,
                                                                          row["client_state_nonce"])
    fresh = s.bc.create_item()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == fresh["id"] for e in es))
