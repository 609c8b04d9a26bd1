"""The published event-data schemas: generated from the code, and strict where the contract is."""
from __future__ import annotations

from pathlib import Path

import pytest

from connector.event_schemas import event_data_schemas
from connector.orders.schema import schema_text
from tests.event_schemas import validator

ROOT = Path(__file__).resolve().parent.parent
ITEM = {"id": "0b1c7f4e-8a47-4f4b-9e0b-6a0d3b1f2c3d", "number": "1000", "displayName": "Bicycle",
        "lastModifiedDateTime": "2026-01-02T03:04:05.678Z"}


def test_published_event_schema_files_are_the_generated_ones() -> None:
    for name, schema in event_data_schemas().items():
        assert (ROOT / "schemas" / name).read_text(encoding="utf-8") == schema_text(schema), (
            f"schemas/{name} is stale: run `python -m connector schema`")


def test_every_event_type_of_every_trigger_has_a_schema() -> None:
    names = set(event_data_schemas())
    for entity in ("item", "salesShipment", "salesInvoice"):
        changes = ("created", "updated", "deleted")
        assert {f"bc.{entity}.{change}.data.schema.json" for change in changes} <= names
    assert "bc.item.pulled.data.schema.json" in names


@pytest.mark.parametrize("data", [
    ITEM | {"@odata.context": "https://bc/$metadata#items/$entity"},
    ITEM | {"itemVariants": [{"id": "0b1c7f4e-8a47-4f4b-9e0b-6a0d3b1f2c3e", "@odata.etag": 'W/"x"'}]},
    {k: v for k, v in ITEM.items() if k != "lastModifiedDateTime"},
])
def test_odata_annotations_or_a_missing_field_fail_the_item_schema(data) -> None:
    assert not validator("bc.item.created").is_valid(data)
    assert validator("bc.item.created").is_valid(ITEM)


def test_a_deleted_event_holds_the_id_and_at_most_the_number() -> None:
    deleted = validator("bc.salesShipment.deleted")
    assert deleted.is_valid({"id": ITEM["id"], "number": "102001"}) and deleted.is_valid({"id": ITEM["id"]})
    assert not deleted.is_valid({"id": ITEM["id"], "displayName": "x"})


def test_a_shipment_event_must_carry_the_orders_key() -> None:
    shipment = {"id": ITEM["id"], "number": "102001", "lastModifiedDateTime": ITEM["lastModifiedDateTime"],
                "externalDocumentNumber": "K-1", "orderNumber": "S-ORD101001", "salesShipmentLines": []}
    assert validator("bc.salesShipment.updated").is_valid(shipment)
    assert not validator("bc.salesShipment.updated").is_valid(
        {k: v for k, v in shipment.items() if k != "externalDocumentNumber"})
