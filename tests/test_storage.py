"""Storage layer against real Azurite: created on first use, ETag concurrency, plain-text queues."""
import threading

import pytest

from connector.settings import load_storage_settings
from connector.storage import (
    Storage,
    delete_if_match,
    insert_entity,
    read_entity,
    replace_if_match,
    table_key,
)


@pytest.fixture
def storage(azurite):
    from tests.conftest import clear_storage

    clear_storage(azurite.connection_string)
    env = {"AzureWebJobsStorage": azurite.connection_string, "BC_TENANT": "t", "BC_CLIENT_ID": "c",
           "BC_CLIENT_SECRET": "s"}
    return Storage(load_storage_settings(env))


def test_tables_and_queues_are_created_on_first_use(storage):
    table = storage.table("bctestcreate")
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
    queue = storage.queue("test-create")
    queue.send_message('{"hello": "world"}')
    assert [m.content for m in queue.receive_messages()] == ['{"hello": "world"}']


def test_a_stale_etag_loses_and_the_row_keeps_the_winner(storage):
    table = storage.table("bctestetag")
    etag = insert_entity(table, {"PartitionKey": "p", "RowKey": "r", "owner": "a"})
    assert etag is not None
    assert insert_entity(table, {"PartitionKey": "p", "RowKey": "r", "owner": "b"}) is None
    new_etag = replace_if_match(table, {"PartitionKey": "p", "RowKey": "r", "owner": "b"}, etag)
    assert new_etag and new_etag != etag
    assert replace_if_match(table, {"PartitionKey": "p", "RowKey": "r", "owner": "c"}, etag) is None
    row, current = read_entity(table, "p", "r")
    assert row["owner"] == "b" and current == new_etag
    assert delete_if_match(table, "p", "r", etag) is False
    assert delete_if_match(table, "p", "r", current) is True
    assert read_entity(table, "p", "r") is None


def test_table_keys_escape_forbidden_characters(storage):
    key = table_key("companies(1)/items?$filter=a#b\\c")
    assert not any(ch in key for ch in "/\\#?")
    table = storage.table("bctestkeys")
    table.upsert_entity({"PartitionKey": key, "RowKey": key})
    assert read_entity(table, key, key) is not None


def test_identity_based_storage_targets_the_account_endpoints_with_a_credential():
    from connector.settings import StorageSettings

    storage = Storage(StorageSettings(connection_string="", account="stbcconn", client_id="mi-client"))
    queues = storage._service("queue")
    assert queues.url.startswith("https://stbcconn.queue.core.windows.net")
    assert queues.credential is not None and queues.account_name == "stbcconn"
    uris = {"table": "https://tables.example.test/", "queue": "https://queues.example.test/"}
    storage = Storage(StorageSettings(connection_string="", service_uris=uris))
    assert storage._service("table").url.startswith("https://tables.example.test")


def test_no_storage_configured_is_a_clear_error():
    from connector.settings import StorageSettings

    with pytest.raises(RuntimeError, match="AzureWebJobsStorage"):
        Storage(StorageSettings(connection_string=""))._service("queue")


def test_the_lean_sender_delivers_messages_as_sent_markup_and_unicode_included(storage):
    texts = ['{"a": "<b> & </b>"}', "Größe ≥ 5 — ünïcødé", "x" * 60_000, "'quotes' \"double\""]
    sender = storage.sender("sender-test")
    threads = [threading.Thread(target=sender.send, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [m.content for m in storage.queue("sender-test").receive_messages(messages_per_page=32)]
    assert sorted(got) == sorted(texts)
