"""The receiver's subscription directory against Azurite: forged subscription ids cannot turn into
table scans, and a subscription saved by another instance is still found."""
from __future__ import annotations

from connector.settings import TABLE_SUBSCRIPTIONS
from connector.webhooks.client_state import client_state
from connector.webhooks.directory import SubscriptionDirectory

KEYS = ("key-1",)


def saved_row(storage, subscription_id: str) -> dict:
    row = {"PartitionKey": "default", "RowKey": f"company:{subscription_id}", "company_id": "company",
           "entity_set": "items", "subscription_id": subscription_id, "client_state_nonce": "nonce"}
    storage.table(TABLE_SUBSCRIPTIONS).upsert_entity(row)
    return row


def test_a_flood_of_unknown_subscription_ids_reloads_the_table_once_per_interval(runtime):
    now = [1000.0]
    directory = SubscriptionDirectory(runtime.storage, KEYS, reload_interval=5.0, clock=lambda: now[0])
    for n in range(200):
        assert directory.find([f"forged-{n}"]) == {}
        now[0] += 0.01
    assert directory.reloads == 1
    now[0] += 5.0
    assert directory.find(["forged-again"]) == {} and directory.reloads == 2


def test_a_subscription_saved_elsewhere_is_found_at_the_next_reload_and_then_from_memory(runtime):
    now = [1000.0]
    directory = SubscriptionDirectory(runtime.storage, KEYS, reload_interval=5.0, clock=lambda: now[0])
    assert directory.find(["forged"]) == {} and directory.reloads == 1
    saved_row(runtime.storage, "sub-1")  # another instance created it just now
    now[0] += 5.0
    [found] = directory.find(["sub-1"]).values()
    assert found.entity_set == "items" and found.accepts(client_state("key-1", "nonce"))
    now[0] += 60.0
    assert directory.find(["sub-1"]) and directory.reloads == 2  # known ids never reload
