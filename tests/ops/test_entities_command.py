"""`python -m connector entities` (issue 23): what BC can watch, asked of the emulator with the
connection's own sign-in, and a ready declaration that the settings accept as it is."""
from __future__ import annotations

import json

from connector.__main__ import main
from connector.settings import load_settings
from connector.webhooks.discovery import declaration


def test_the_listing_names_routes_and_watchable_resources_marking_the_declared(connector_env, capsys):
    connector_env(TRIGGERS='[{"entitySet": "customers", "queue": "bc-customers"}]')
    assert main(["entities", "--connection", "default"]) == 0
    out = capsys.readouterr().out
    assert "API routes (apiRoutes): v2.0, contoso/shop/v1.0" in out
    lines = {line.strip() for line in out.splitlines()}
    assert {"* v2.0/customers", "* v2.0/items", "v2.0/itemLedgerEntries",
            "contoso/shop/v1.0/webOrders"} <= lines
    assert "v2.0/salesOrderLines" not in out  # BC cannot watch a temporary page


def test_a_declaration_is_printed_for_a_custom_page_refused_for_what_bc_cannot_watch(connector_env, capsys):
    connector_env()
    assert main(["entities", "--entity-set", "webOrders", "--api", "contoso/shop/v1.0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"api": "contoso/shop/v1.0", "entitySet": "webOrders", "queue": "contoso-web-orders",
                       "changeTypes": ["created"], "entity": "webOrder"}
    assert main(["entities", "--entity-set", "salesOrderLines"]) == 1
    assert "cannot watch v2.0/salesOrderLines" in capsys.readouterr().err


def test_printed_declarations_are_valid_settings():
    ledger = declaration("v2.0", "itemLedgerEntries")
    assert ledger["queue"] == "bc-item-ledger-entries" and ledger["numberField"] == "entryNumber"
    declared = json.dumps([ledger, declaration("contoso/shop/v1.0", "webOrders")])
    settings = load_settings({"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s",
                              "TRIGGERS": declared})
    trigger = settings.connection("default").trigger("itemLedgerEntries")
    assert trigger is not None and trigger.event_type("created") == "bc.itemLedgerEntry.created"


def test_schemas_from_metadata_cover_every_declared_event_type_and_keep_published_files(
        connector_env, tmp_path, capsys):
    from jsonschema import Draft202012Validator

    from connector.runtime import get_runtime

    connector_env(TRIGGERS=json.dumps([
        {"entitySet": "customers", "queue": "bc-customers", "changeTypes": ["created", "updated"]},
        {"entitySet": "itemLedgerEntries", "queue": "bc-stock-movements", "numberField": "entryNumber"},
        {"api": "contoso/shop/v1.0", "entitySet": "webOrders", "queue": "contoso-web-orders",
         "changeTypes": "created,deleted"}]),
        COMMANDS=json.dumps([
            {"name": "salesQuote", "entitySet": "salesQuotes", "key": "externalDocumentNumber",
             "lines": "salesQuoteLines"},
            {"name": "customer", "entitySet": "customers", "key": "email", "mode": "upsert"}]))
    (tmp_path / "bc.item.created.data.schema.json").write_text("{}", encoding="utf-8")
    assert main(["schema", "--from-metadata", "--out", str(tmp_path)]) == 0
    written = {p.name for p in tmp_path.iterdir()}
    assert {"bc.customer.created.data.schema.json", "bc.customer.updated.data.schema.json",
            "bc.itemLedgerEntry.created.data.schema.json", "bc.webOrder.created.data.schema.json",
            "bc.webOrder.deleted.data.schema.json", "bc.salesShipment.created.data.schema.json",
            "bc.salesInvoice.created.data.schema.json"} <= written
    assert (tmp_path / "bc.item.created.data.schema.json").read_text(encoding="utf-8") == "{}"  # kept
    assert "kept" in capsys.readouterr().out
    runtime = get_runtime()
    bc = runtime.bc()
    company = runtime.company_id()
    for entity_set, kind in (("customers", "bc.customer.created"), ("itemLedgerEntries",
                                                                    "bc.itemLedgerEntry.created")):
        schema = json.loads((tmp_path / f"{kind}.data.schema.json").read_text(encoding="utf-8"))
        entity = {k: v for k, v in next(bc.iter_entities(bc.company_path(company, entity_set))).items()
                  if not k.startswith("@odata.")}
        assert not list(Draft202012Validator(schema).iter_errors(entity))
        assert schema["properties"]["id"] == {"type": "string", "format": "uuid"}
    quote = json.loads((tmp_path / "bc-command.salesQuote.schema.json").read_text(encoding="utf-8"))
    message = {"type": "salesQuote", "externalDocumentNumber": "Q-1", "customerNumber": "GL00000008",
               "salesQuoteLines": [{"lineType": "Item", "lineObjectNumber": "1896-S", "quantity": 2}]}
    assert not list(Draft202012Validator(quote).iter_errors(message))
    assert list(Draft202012Validator(quote).iter_errors(message | {"noSuchField": 1}))
    customer = json.loads((tmp_path / "bc-command.customer.schema.json").read_text(encoding="utf-8"))
    assert customer["required"] == ["type", "email"]
    ledger_file = tmp_path / "bc.itemLedgerEntry.created.data.schema.json"
    ledger = json.loads(ledger_file.read_text(encoding="utf-8"))
    assert ledger["properties"]["quantity"] == {"type": "number"}
    assert ledger["properties"]["entryNumber"] == {"type": "integer"}
