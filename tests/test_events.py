"""Events: CloudEvents shape and stable ids; publishing to Azurite, large data moved to blob storage."""
import json

import pytest

from connector.events import EventPublisher, cloud_event, event_id
from connector.settings import load_storage_settings
from connector.storage import Storage

ITEM_CREATED = "bc.item.created"  # a type the contract names
ITEM = {"@odata.etag": 'W/"x"', "id": "0b1c", "number": "1000",
        "lastModifiedDateTime": "2026-01-02T03:04:05.678Z", "itemVariants": [{"id": "v1", "code": "RED"}]}


def test_cloud_event_follows_the_contract_and_drops_the_odata_etag():
    e = cloud_event(event_type=ITEM_CREATED, connection="default", company_id="c1", entity=ITEM,
                    id_parts=["items", "0b1c"])
    assert e["specversion"] == "1.0" and e["type"] == "bc.item.created"
    assert e["source"] == "bc-connector/default/c1" and e["subject"] == "0b1c"
    assert e["time"] == ITEM["lastModifiedDateTime"] and e["datacontenttype"] == "application/json"
    assert e["data"]["itemVariants"] == [{"id": "v1", "code": "RED"}] and "@odata.etag" not in e["data"]


def test_event_ids_are_stable_and_distinguish_changes():
    assert event_id("a", "b") == event_id("a", "b")
    assert event_id("a", "b") != event_id("a", "c")
    assert event_id("ab", "c") != event_id("a", "bc")


@pytest.fixture
def publisher(azurite):
    from tests.conftest import clear_storage

    clear_storage(azurite.connection_string)
    env = {"AzureWebJobsStorage": azurite.connection_string, "BC_TENANT": "t", "BC_CLIENT_ID": "c",
           "BC_CLIENT_SECRET": "s"}
    storage = Storage(load_storage_settings(env))
    return storage, EventPublisher(storage, container="bc-event-payloads", max_inline_bytes=60000,
                                   concurrency=8)


def test_published_events_arrive_as_plain_json(publisher):
    storage, pub = publisher
    events = [cloud_event(event_type=ITEM_CREATED, connection="default", company_id="c1",
                          entity=dict(ITEM, id=str(i)), id_parts=[str(i)]) for i in range(40)]
    assert pub.publish("test-events", events) == 40
    got = []
    for batch in storage.queue("test-events").receive_messages(messages_per_page=32).by_page():
        got.extend(json.loads(m.content)["subject"] for m in batch)
    assert sorted(got, key=int) == [str(i) for i in range(40)]


def test_an_event_too_large_for_a_queue_message_carries_its_data_in_blob_storage(publisher):
    storage, pub = publisher
    lines = [{"sequence": i, "description": "x" * 200} for i in range(600)]
    invoice = {"id": "inv1", "lastModifiedDateTime": "2026-01-01T00:00:00Z", "salesInvoiceLines": lines}
    event = cloud_event(event_type="bc.salesInvoice.created", connection="default", company_id="c1",
                        entity=invoice, id_parts=["inv1"])
    pub.publish("test-large", [event])
    [msg] = list(storage.queue("test-large").receive_messages())
    slim = json.loads(msg.content)
    assert "data" not in slim and slim["id"] == event["id"]
    blob_name = slim["dataref"].split("/bc-event-payloads/", 1)[1]
    data = json.loads(storage.container("bc-event-payloads").download_blob(blob_name).readall())
    assert len(data["salesInvoiceLines"]) == 600
