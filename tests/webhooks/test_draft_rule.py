"""The pure rule for sets where BC mixes drafts and posted documents (`triggers.change_of`), and the
item pull's memory of its overlap (`recent_keys`)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.items.pull import recent_keys
from connector.webhooks.dedupe import Recorded
from connector.webhooks.triggers import BY_ENTITY_SET, change_of, seen

INVOICES = BY_ENTITY_SET["salesInvoices"]
ITEMS = BY_ENTITY_SET["items"]
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
    assert seen(DRAFT | {"number": "S-INV1"}, INVOICES)["draft"] == "1"
    assert seen(POSTED, INVOICES)["draft"] == ""
    assert "draft" not in seen(DRAFT, ITEMS)


def test_the_pull_remembers_what_the_next_overlap_reads_again():
    cursor = datetime(2026, 1, 1, tzinfo=UTC)
    seen_keys = [("old", cursor - timedelta(seconds=61)), ("edge", cursor - timedelta(seconds=60)),
                 ("in", cursor - timedelta(seconds=59)), ("none", None)]
    assert recent_keys(seen_keys, cursor, 60) == "in"
    assert recent_keys(seen_keys, None, 60) == ""
