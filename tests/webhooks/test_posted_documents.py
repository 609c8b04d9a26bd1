"""Posted documents as BC posts them (issue 22), end to end: the real app in the local host, the
emulator's webhooks flushed by the test, Azurite. A draft invoice is not an invoice; posting it is."""
from __future__ import annotations

import pytest

from connector.settings import QUEUE_ITEMS, QUEUE_SALES_INVOICES
from tests.webhooks.test_change_events import delivered

pytestmark = pytest.mark.e2e


@pytest.fixture
def slow_bc(make_emulator):
    """An emulator that notifies only when the test flushes."""
    return make_emulator(webhook_debounce_seconds=3600.0)


def test_a_draft_invoice_is_not_announced_and_its_posting_is_announced_once(scenario, slow_bc):
    s = scenario(bc=slow_bc)
    s.subscribe()
    draft = s.bc.draft_invoice()
    s.bc.flush()
    s.host.wait_idle(60)
    assert delivered(s, "created", draft["id"])  # BC did notify the draft
    assert s.queues.take(QUEUE_SALES_INVOICES) == []
    posted = s.bc.post_draft(draft["id"])
    s.bc.flush()
    s.host.wait_idle(60)
    assert delivered(s, "updated", draft["id"])  # posting is an update under the same id
    s.bc.flush()  # BC repeats nothing new: still one event
    s.host.wait_idle(60)
    s.queues.take(QUEUE_SALES_INVOICES)
    [event] = s.queues.about(QUEUE_SALES_INVOICES, draft["id"])
    assert event["type"] == "bc.salesInvoice.created"
    assert event["data"]["status"] == "Open" and event["data"]["number"] == posted["number"]


def test_drafts_are_announced_under_their_own_type_when_asked(scenario, slow_bc):
    s = scenario(bc=slow_bc, SALES_INVOICE_CHANGE_TYPES="created,drafted")
    s.subscribe()
    draft = s.bc.draft_invoice()
    s.bc.flush()
    s.queues.wait_for(QUEUE_SALES_INVOICES, lambda es: any(e["subject"] == draft["id"] for e in es))
    s.bc.post_draft(draft["id"])
    s.bc.flush()
    s.queues.wait_for(QUEUE_SALES_INVOICES, lambda es: [e["subject"] for e in es].count(draft["id"]) == 2)
    drafted, created = s.queues.about(QUEUE_SALES_INVOICES, draft["id"])
    assert (drafted["type"], drafted["data"]["status"]) == ("bc.salesInvoice.drafted", "Draft")
    assert (created["type"], created["data"]["status"]) == ("bc.salesInvoice.created", "Open")
    assert drafted["id"] != created["id"]


def test_an_order_shipped_and_invoiced_through_the_api_announces_its_invoice_once(scenario, slow_bc):
    s = scenario(bc=slow_bc)
    s.subscribe()
    order = s.bc.create_order("WEB-POSTED-1")
    s.bc.ship_and_invoice(order["id"])
    s.bc.flush()
    events = s.queues.wait_for(QUEUE_SALES_INVOICES,
                               lambda es: any(e.get("bcexternaldocno") == "WEB-POSTED-1" for e in es))
    [event] = [e for e in events if e.get("bcexternaldocno") == "WEB-POSTED-1"]
    assert event["type"] == "bc.salesInvoice.created" and event["data"]["status"] == "Open"


def test_an_item_that_existed_before_the_connector_is_updated_never_created(scenario, slow_bc):
    s = scenario(bc=slow_bc, ITEM_CHANGE_TYPES="created,updated,deleted")
    s.subscribe()  # the baseline records every existing item, the seed's included
    seed_item = s.bc.list("items")[0]
    s.bc.update("items", seed_item["id"], {"displayName": "changed after go-live"})
    s.bc.flush()
    s.queues.wait_for(QUEUE_ITEMS, lambda es: any(e["subject"] == seed_item["id"] for e in es))
    s.host.fire_timer("sweep_created")  # the sweep agrees: nothing more
    s.host.wait_idle(60)
    s.queues.take(QUEUE_ITEMS)
    [event] = s.queues.about(QUEUE_ITEMS, seed_item["id"])
    assert event["type"] == "bc.item.updated"
