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
