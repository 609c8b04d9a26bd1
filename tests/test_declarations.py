"""Declared triggers (issue 23): the TRIGGERS setting is validated at start with errors that name the
declaration and field; the seed's three webhook triggers stay the defaults with their options."""
from __future__ import annotations

import json

import pytest

from connector.declarations import Command, WatchedEntitySet
from connector.settings import SettingsError, load_settings
from connector.webhooks.dedupe import Recorded
from connector.webhooks.triggers import announced, seen

BASE = {"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s"}


def triggers(**env: str) -> dict[str, WatchedEntitySet]:
    conn = load_settings(BASE | env).connection("default")
    return {t.key: t for t in conn.triggers}


def test_without_declarations_the_seed_triggers_keep_their_queues_types_and_options():
    seed = triggers(PULL_SALES_INVOICE_LINES="false", ITEM_CHANGE_TYPES="created,deleted")
    assert list(seed) == ["items", "salesShipments", "salesInvoices"]
    assert [(t.queue, t.event_type("created")) for t in seed.values()] == [
        ("bc-items", "bc.item.created"), ("bc-sales-shipments", "bc.salesShipment.created"),
        ("bc-sales-invoices", "bc.salesInvoice.created")]
    assert seed["items"].changes == {"created", "deleted"} and seed["items"].expand == ("itemVariants",)
    assert seed["salesInvoices"].expand == () and seed["salesShipments"].params() == {
        "$expand": "salesShipmentLines"}


def test_declared_triggers_of_the_standard_and_a_custom_api_come_after_the_seed():
    declared = triggers(TRIGGERS=json.dumps([
        {"entitySet": "customers", "queue": "bc-customers", "changeTypes": ["created", "updated"],
         "watch": ["displayName", "email"], "select": ["number", "displayName", "email"]},
        {"entitySet": "itemLedgerEntries", "queue": "bc-stock-movements", "numberField": "entryNumber"},
        {"api": "contoso/shop/v1.0", "entitySet": "webOrders", "queue": "contoso-web-orders",
         "typePrefix": "contoso"},
    ]))
    customers = declared["customers"]
    assert customers.event_type("updated") == "bc.customer.updated"
    assert customers.select == ("number", "displayName", "email", "id", "lastModifiedDateTime")
    assert declared["itemLedgerEntries"].event_type("created") == "bc.itemLedgerEntry.created"
    custom = declared["contoso/shop/v1.0/webOrders"]
    assert custom.resource == "contoso/shop/v1.0/webOrders"
    assert custom.event_type("created") == "contoso.webOrder.created"
    assert custom.resource_path("C") == "/api/contoso/shop/v1.0/companies(C)/webOrders"
    assert declared["items"].resource == "v2.0/items"


def test_a_declaration_of_a_seed_entity_set_replaces_the_seed_trigger():
    declared = triggers(TRIGGERS='[{"entitySet": "items", "queue": "bc-items", "watch": ["unitPrice"], '
                                 '"changeTypes": "created,updated"}]')
    assert list(declared) == ["items", "salesShipments", "salesInvoices"]
    assert declared["items"].watch == ("unitPrice",) and declared["items"].expand == ()


def test_a_connection_declares_its_own_triggers_with_its_prefix():
    settings = load_settings(BASE | {"BC_CONNECTIONS": "default,emea", "EMEA__TRIGGERS":
                                     '[{"entitySet": "vendors", "queue": "emea-vendors"}]'})
    assert settings.connection("emea").trigger("vendors") is not None
    assert settings.connection("default").trigger("vendors") is None


@pytest.mark.parametrize(("value", "named"), [
    ("{", "TRIGGERS is not valid JSON"),
    ('{"entitySet": "customers"}', "JSON list"),
    ('[{"queue": "q-1"}]', "TRIGGERS[0]: entitySet"),
    ('[{"entitySet": "customers"}]', "TRIGGERS[0] (customers): queue"),
    ('[{"entitySet": "customers", "queue": "Bad_Queue"}]', "queue must be a storage queue name"),
    ('[{"entitySet": "customers", "queue": "q-1", "changeTypes": "created,renamed"}]', "changeTypes"),
    ('[{"entitySet": "customers", "queue": "q-1", "api": "contoso/shop"}]', "publisher/group/version"),
    ('[{"entitySet": "customers", "queue": "q-1", "watched": ["email"]}]', "unknown field(s) ['watched']"),
    ('[{"entitySet": "customers", "queue": "q-1", "watch": "e mail"}]', "watch has invalid names"),
    ('[{"entitySet": "customers", "queue": "q-1"}, {"entitySet": "customers", "queue": "q-2"}]',
     "customers declared more than once"),
])
def test_a_malformed_declaration_stops_the_start_naming_the_setting_and_field(value, named):
    with pytest.raises(SettingsError, match="connection 'default'") as error:
        load_settings(BASE | {"TRIGGERS": value})
    assert named in str(error.value)


CUSTOMERS = WatchedEntitySet("customers", "bc-customers", "customer",
                             changes=frozenset({"created", "updated"}), watch=("email",))
BEFORE = {"id": "x", "number": "C1", "email": "a@example.com", "phoneNumber": "1",
          "lastModifiedDateTime": "2026-01-01T00:00:00Z"}


def test_an_update_is_announced_only_when_a_watched_field_changed():
    kept = seen(CUSTOMERS, BEFORE)
    assert set(kept) == {"modified", "number", "digest"}  # a digest, not the entity
    recorded = Recorded("updated", kept["modified"], kept["number"], kept["digest"])
    assert not announced(CUSTOMERS, recorded, BEFORE | {"phoneNumber": "2"})
    assert announced(CUSTOMERS, recorded, BEFORE | {"email": "b@example.com"})
    assert announced(CUSTOMERS, Recorded("updated"), BEFORE)  # nothing recorded: announced
    assert announced(CUSTOMERS, Recorded("created"), BEFORE)


def test_without_watched_fields_every_update_is_announced_and_no_digest_is_kept():
    items = WatchedEntitySet("items", "bc-items", "item", changes=frozenset({"updated"}))
    assert "digest" not in seen(items, BEFORE)
    assert announced(items, Recorded("updated", "", "", ""), BEFORE)
    assert not announced(items, Recorded("created"), BEFORE)


def commands(value: str) -> dict[str, Command]:
    conn = load_settings(BASE | {"COMMANDS": value}).connection("default")
    return {c.name: c for c in conn.commands}


def test_commands_are_declared_with_entity_set_key_lines_and_mode():
    declared = commands(json.dumps([
        {"name": "salesQuote", "entitySet": "salesQuotes", "key": "externalDocumentNumber",
         "lines": "salesQuoteLines"},
        {"name": "customer", "entitySet": "customers", "key": "email", "mode": "upsert"},
        {"name": "webOrder", "entitySet": "webOrders", "key": "number", "api": "contoso/shop/v1.0"},
    ]))
    assert declared["salesQuote"] == Command("salesQuote", "salesQuotes", "externalDocumentNumber",
                                             "salesQuoteLines")
    assert declared["customer"].upsert and declared["webOrder"].api == "contoso/shop/v1.0"
    assert load_settings(BASE).connection("default").commands == ()  # sales orders keep their queue


@pytest.mark.parametrize(("value", "named"), [
    ('[{"entitySet": "salesQuotes", "key": "externalDocumentNumber"}]', "COMMANDS[0]: name"),
    ('[{"name": "q", "entitySet": "salesQuotes", "key": 7}]', "COMMANDS[0] (q): key"),
    ('[{"name": "c", "entitySet": "customers", "mode": "upsert"}]', "key must name the field"),
    ('[{"name": "q", "entitySet": "salesQuotes", "key": "k", "mode": "merge"}]', "mode must be"),
    ('[{"name": "c", "entitySet": "customers", "key": "email", "mode": "upsert", "lines": "x"}]',
     "an upsert has no lines"),
    ('[{"name": "salesOrder", "entitySet": "salesOrders", "key": "externalDocumentNumber"}]',
     "salesOrder declared more than once"),
])
def test_a_malformed_command_stops_the_start_naming_it(value, named):
    with pytest.raises(SettingsError, match="connection 'default'") as error:
        load_settings(BASE | {"COMMANDS": value})
    assert named in str(error.value)
