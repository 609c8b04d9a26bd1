"""Pure decisions of the change triggers: is a read a creation, an update or nothing new; event ids
per change; the shape of a deletion; one event shape whatever the path."""
from __future__ import annotations

from datetime import UTC, datetime

from connector.declarations import WatchedEntitySet
from connector.events import cloud_event
from connector.webhooks.dedupe import Recorded, hold_verdict, recorded_of
from connector.webhooks.triggers import change_event, deleted_event

NOW = datetime(2026, 3, 1, tzinfo=UTC)
T1, T2 = "2026-02-01T10:00:00.123Z", "2026-02-01T10:00:05.456Z"
ITEMS = WatchedEntitySet("items", "bc-items", "item", expand=("itemVariants",))
SHIPMENTS = WatchedEntitySet("salesShipments", "bc-sales-shipments", "salesShipment",
                             expand=("salesShipmentLines",))
ID = "0b1c7f4e-8a47-4f4b-9e0b-6a0d3b1f2c3d"


def row(state: str, modified: str = T1, **more: str) -> dict:
    return {"state": state, "modified": modified, "number": "1000", "owner": "m1", **more}


def test_a_read_newer_than_recorded_is_an_update_and_the_same_or_older_is_nothing_new():
    assert hold_verdict(row("emitted"), "m2", NOW, T2) == "free"
    assert recorded_of(row("emitted"), deleting=False) == Recorded("updated", T1, "1000")
    assert hold_verdict(row("known"), "m2", NOW, T2) == "free"
    assert hold_verdict(row("emitted"), "m2", NOW, T1) == "settled"
    assert hold_verdict(row("emitted", modified=T2), "m2", NOW, T1) == "settled"
    assert hold_verdict(row("emitted"), "m2", NOW, None) == "settled"  # a created note, before the GET


def test_a_new_entity_is_a_creation_and_a_taken_over_claim_keeps_its_change():
    assert hold_verdict(None, "m1", NOW, T1) == "free" and recorded_of(None, False).change == "created"
    abandoned = row("claimed", change="updated", claimed_until="2026-02-01T00:00:00Z")
    assert hold_verdict(abandoned, "m2", NOW, T2) == "free"
    assert recorded_of(abandoned, False).change == "updated"
    live = row("claimed", change="created", claimed_until="2026-03-01T00:05:00Z")
    assert hold_verdict(live, "m2", NOW, T2) == "busy"
    absurd = row("claimed", change="created", claimed_until="2026-04-01T00:00:00Z")  # > HOLD_SECONDS ahead
    assert hold_verdict(absurd, "m2", NOW, T2) == "free"  # not believed: counts as abandoned


def test_a_deletion_is_claimed_once_and_remembers_the_number():
    assert hold_verdict(row("emitted"), "m2", NOW, deleting=True) == "free"
    assert recorded_of(row("emitted"), deleting=True) == Recorded("deleted", T1, "1000")
    gone = row("gone", expires_at="2026-03-10T00:00:00Z")
    assert hold_verdict(gone, "m3", NOW, deleting=True) == "settled"
    assert hold_verdict(gone, "m3", NOW, T2) == "settled"  # a late `updated` of a deleted entity


def test_update_event_ids_follow_the_change_and_creation_ids_the_entity():
    first = {"id": ID, "number": "1000", "lastModifiedDateTime": T1}
    second = first | {"lastModifiedDateTime": T2}
    assert change_event(ITEMS, "created", "default", "c1", first)["id"] == \
        change_event(ITEMS, "created", "default", "c1", second)["id"]
    updated = change_event(ITEMS, "updated", "default", "c1", second)
    assert updated["type"] == "bc.item.updated"
    assert updated["id"] == change_event(ITEMS, "updated", "default", "c1", dict(second))["id"]
    assert updated["id"] != change_event(ITEMS, "updated", "default", "c1", first)["id"]


def test_a_deleted_event_carries_the_id_and_the_last_number_seen():
    event = deleted_event(SHIPMENTS, "default", "c1", ID, Recorded("deleted", T1, "102001"), T2)
    assert (event["type"], event["subject"], event["time"]) == ("bc.salesShipment.deleted", ID, T2)
    assert event["data"] == {"id": ID, "number": "102001"}
    unknown = deleted_event(SHIPMENTS, "default", "c1", ID, Recorded("deleted"), T2)
    assert unknown["data"] == {"id": ID}


def test_event_data_holds_no_odata_annotations_and_documents_carry_the_orders_key():
    shipment = {"@odata.context": "x", "@odata.etag": "y", "id": ID, "number": "102001",
                "externalDocumentNumber": "WEB-1", "orderNumber": "S-ORD101001",
                "salesShipmentLines": [{"@odata.etag": "z", "id": "l1"}]}
    event = cloud_event(event_type="bc.salesShipment.created", connection="default", company_id="c1",
                        entity=shipment, id_parts=["x"])
    assert event["data"] == {"id": ID, "number": "102001", "externalDocumentNumber": "WEB-1",
                             "orderNumber": "S-ORD101001", "salesShipmentLines": [{"id": "l1"}]}
    assert (event["bcexternaldocno"], event["bcordernumber"]) == ("WEB-1", "S-ORD101001")
    adhoc = cloud_event(event_type="bc.salesShipment.created", connection="default", company_id="c1",
                        entity=shipment | {"externalDocumentNumber": "", "orderNumber": ""}, id_parts=["x"])
    assert "bcexternaldocno" not in adhoc and "bcordernumber" not in adhoc
