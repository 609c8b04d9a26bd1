"""The pure rule for sets where BC mixes drafts and posted documents (`triggers.change_of`), and the
item pull's memory of its overlap (`recent_keys`)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connector.declarations import DeclarationError, parse_trigger
from connector.items.pull import recent_keys
from connector.settings import QUEUE_ITEMS, QUEUE_SALES_INVOICES
from connector.webhooks.dedupe import Recorded
from connector.webhooks.triggers import change_of, seen

INVOICES = parse_trigger("TRIGGERS", 0, {"entitySet": "salesInvoices", "queue": QUEUE_SALES_INVOICES,
                                          "draft": {"field": "status", "value": "Draft"}})
ITEMS = parse_trigger("TRIGGERS", 0, {"entitySet": "items", "queue": QUEUE_ITEMS})
DRAFT = {"id": "a", "status": "Draft"}
POSTED = {"id": "a", "status": "Open"}


def test_a_document_first_seen_posted_is_created_whatever_bc_called_the_change():
    assert change_of(INVOICES, Recorded("created", new=True), POSTED) == "created"
    assert change_of(INVOICES, Recorded("updated", new=True), POSTED) == "created"  # posted from a draft
    assert change_of(INVOICES, Recorded("updated", draft=True), POSTED) == "created"  # the draft's row


def test_drafts_are_drafted_once_and_posted_documents_update():
    assert change_of(INVOICES, Recorded("created", new=True), DRAFT) == "drafted"
    assert change_of(INVOICES, Recorded("updated", draft=True), DRAFT) is None
    assert change_of(INVOICES, Recorded("updated"), POSTED | {"status": "Paid"}) == "updated"


def test_sets_without_drafts_keep_the_change_claimed():
    assert change_of(ITEMS, Recorded("updated", new=True), {"id": "a", "status": "Draft"}) == "updated"
    assert change_of(ITEMS, Recorded("created", new=True), {"id": "a"}) == "created"


def test_the_row_remembers_a_draft_only_where_drafts_exist():
    assert seen(INVOICES, DRAFT | {"number": "S-INV1"})["draft"] == "1"
    assert seen(INVOICES, POSTED)["draft"] == ""
    assert "draft" not in seen(ITEMS, DRAFT)


def test_any_declared_document_set_may_have_drafts_and_only_it_may_announce_drafted():
    memos = parse_trigger("TRIGGERS", 0, {"entitySet": "salesCreditMemos", "queue": "bc-credit-memos",
                                          "draft": {"field": "status", "value": "Draft"},
                                          "changeTypes": ["created", "drafted"]})
    assert memos.draft == ("status", "Draft") and memos.needs("updated") and not memos.announces("updated")
    with pytest.raises(DeclarationError):
        parse_trigger("TRIGGERS", 0, {"entitySet": "items", "queue": QUEUE_ITEMS, "changeTypes": "drafted"})
    with pytest.raises(DeclarationError):
        parse_trigger("TRIGGERS", 0, {"entitySet": "x", "queue": "bc-x", "draft": "Draft"})


def test_the_pull_remembers_what_the_next_overlap_reads_again():
    cursor = datetime(2026, 1, 1, tzinfo=UTC)
    seen_keys = [("old", cursor - timedelta(seconds=61)), ("edge", cursor - timedelta(seconds=60)),
                 ("in", cursor - timedelta(seconds=59)), ("none", None)]
    assert recent_keys(seen_keys, cursor, 60) == "in"
    assert recent_keys(seen_keys, None, 60) == ""
