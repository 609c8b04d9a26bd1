"""The pure decisions of the business-event channel: clientState, the payload's Url, which events."""
from __future__ import annotations

from dataclasses import replace

from connector.businessevents.catalog import (
    BY_NAME,
    accepts,
    document_of,
    event_client_state,
    on_our_root,
    refusal,
    wanted_events,
)
from connector.settings import ConnectionSettings, seed_triggers

KEY = "9vojfjfiSnHXn6bFONOibYRAB7MW-UIPY24Iz20cIPs="
OLD = "u3Zt0kY9mD8C2p8u0V7v3bGq3pQ0oM3fC5wq8Q2s1Xs="
COMPANY = "1b0e9c52-4c3f-4d8c-9a3e-1f2a3b4c5d6e"
DOC = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
ROOT = "/v2.0/lmints.io/production/api/"


def test_a_client_state_is_accepted_for_its_own_connection_company_and_event_only():
    state = event_client_state(KEY, "default", COMPANY, "SalesInvoicePosted")
    assert accepts((KEY,), state, "default", COMPANY.upper(), "SalesInvoicePosted")
    assert accepts((OLD, KEY), state, "default", COMPANY, "SalesInvoicePosted")  # rotation
    assert not accepts((KEY,), state, "emea", COMPANY, "SalesInvoicePosted")
    assert not accepts((KEY,), state, "default", COMPANY, "SalesShipmentPosted")
    assert not accepts((KEY,), None, "default", COMPANY, "SalesInvoicePosted")
    assert not accepts((), state, "default", COMPANY, "SalesInvoicePosted")


def test_bcs_url_is_re_anchored_on_the_configured_root_when_only_the_tenant_form_differs():
    url = f"https://api.bc.example/v2.0/4a7e3c2b-9d1f-4e6a-8b5c-2f0e1d3c4b5a/production/api/v2.0/companies({COMPANY})/salesInvoices({DOC})"
    assert on_our_root(url, "production", ROOT) == \
        f"https://api.bc.example{ROOT}v2.0/companies({COMPANY})/salesInvoices({DOC})"
    other_env = url.replace("/production/", "/sandbox/")
    assert on_our_root(other_env, "production", ROOT) == other_env  # left for the resolver to refuse
    assert on_our_root("not a url", "production", ROOT) == "not a url"


def test_the_url_must_name_the_payloads_document():
    invoice = BY_NAME["SalesInvoicePosted"]
    url = f"https://h{ROOT}v2.0/companies({COMPANY})/salesInvoices({DOC})"
    assert document_of(url) == (COMPANY, "salesInvoices", DOC)
    assert refusal(invoice, COMPANY, document_of(url), DOC.upper()) is None
    assert refusal(invoice, COMPANY, document_of(url.replace("salesInvoices", "customers")), DOC)
    assert refusal(invoice, COMPANY, document_of(url), "7c9e6679-7425-40de-944b-e07fc1f90ae8")
    assert refusal(invoice, "not-a-guid", document_of(url), DOC)
    assert refusal(invoice, COMPANY, None, DOC)
    assert refusal(None, COMPANY, document_of(url), DOC) == "event not subscribed"
    assert document_of(f"https://h{ROOT}v2.0/companies({COMPANY})/salesInvoices") is None


def test_events_follow_the_setting_and_the_triggers_that_announce_postings():
    def connection(**values) -> ConnectionSettings:
        conn = ConnectionSettings(name="default", tenant="t", client_id="c", client_secret="s", **values)
        return replace(conn, triggers=seed_triggers(conn))

    assert wanted_events(connection()) == []
    on = connection(business_events=True)
    assert [e.name for e in wanted_events(on)] == ["SalesInvoicePosted", "SalesShipmentPosted"]
    no_invoices = connection(business_events=True, sales_invoice_change_types=frozenset({"updated"}))
    assert [e.name for e in wanted_events(no_invoices)] == ["SalesShipmentPosted"]


def test_a_declared_trigger_may_list_the_verbs_bcs_business_events_add_to_its_entity_set():
    from connector.declarations import DeclarationError, parse_trigger

    customers = parse_trigger("TRIGGERS", 0, {"entitySet": "customers", "queue": "bc-customers",
                                              "changeTypes": ["created", "blocked"]})
    conn = ConnectionSettings(name="default", tenant="t", client_id="c", client_secret="s",
                              business_events=True)
    conn = replace(conn, triggers=(*seed_triggers(conn), customers))
    assert [e.name for e in wanted_events(conn)] == ["SalesInvoicePosted", "SalesShipmentPosted",
                                                      "CustomerBlocked"]
    assert customers.event_type("blocked") == "bc.customer.blocked"
    try:
        parse_trigger("TRIGGERS", 0, {"entitySet": "items", "queue": "bc-x", "changeTypes": ["blocked"]})
    except DeclarationError:
        pass
    else:
        raise AssertionError("items have no `blocked` business event")


def test_a_subscription_is_kept_only_while_active_on_this_url_and_signed_with_the_first_key():
    from connector.businessevents.subscriptions import plan_event

    url = "https://app/api/webhooks/bc/events?connection=default"
    sub = {"subscriptionState": "Active", "notificationUrl": url}
    row = {"client_state_key": "k1"}
    assert plan_event(None, row, "k1", url) == "create"
    assert plan_event(sub, row, "k1", url) == "keep"
    assert plan_event(sub | {"subscriptionState": "Disabled"}, row, "k1", url) == "recreate"
    assert plan_event(sub | {"notificationUrl": url.replace("app", "old-port")}, row, "k1", url) == "recreate"
    assert plan_event(sub, row, "k2", url) == "recreate"  # the key rotated
