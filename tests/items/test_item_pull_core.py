"""The pure decisions of the item pull: filters, cursor promotion and overlap, event shaping."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.bc.timestamps import bc_datetime, parse_iso
from connector.cursors import ReadCursor
from connector.items.pull import (
    PHASE_ITEMS,
    PHASE_VARIANTS,
    BadPullRequest,
    ItemPullRequest,
    RecentItemIds,
    item_event,
    items_by_id_query,
    items_query,
    items_read,
    page_latest,
    parse_pull_request,
    variants_query,
)

T0 = "2024-05-01T10:00:00.000Z"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def item(n: int, modified: str = T0, variants: list[dict] | None = None) -> dict:
    return {"@odata.etag": f'W/"{n}"', "id": f"00000000-0000-0000-0000-{n:012d}", "number": f"I{n}",
            "lastModifiedDateTime": modified, "itemVariants": variants or []}


def variant(n: int, modified: str = T0, item_id: str = "") -> dict:
    return {"@odata.etag": f'W/"v{n}"', "id": f"10000000-0000-0000-0000-{n:012d}", "itemId": item_id,
            "code": f"V{n}", "lastModifiedDateTime": modified}


def test_item_filter_uses_an_unquoted_datetime_and_expands_variants_only_when_on():
    assert items_query(None, True) == {"$expand": "itemVariants"}
    assert items_query(None, False) == {}
    assert items_query(T0, True) == {"$filter": f"lastModifiedDateTime gt {T0}", "$expand": "itemVariants"}
    assert items_query(T0, False) == {"$filter": f"lastModifiedDateTime gt {T0}"}
    assert variants_query(T0) == {"$filter": f"lastModifiedDateTime gt {T0}"}


def test_items_of_changed_variants_are_fetched_by_id_in_one_filter_without_those_already_emitted():
    query = items_by_id_query(["a-1", "b-2"], T0)
    assert query == {"$filter": f"(id eq a-1 or id eq b-2) and lastModifiedDateTime le {T0}",
                     "$expand": "itemVariants"}


def test_times_are_bc_form_with_milliseconds_truncated():
    value = datetime(2024, 5, 1, 10, 0, 0, 123999, tzinfo=UTC)
    assert bc_datetime(value) == "2024-05-01T10:00:00.123Z"


def test_page_latest_counts_expanded_variants():
    page = [item(1, "2024-05-01T10:00:00.000Z", [variant(1, "2024-05-01T11:00:00.000Z")]),
            item(2, "2024-05-01T10:30:00.000Z")]
    assert page_latest(page) == parse_iso("2024-05-01T11:00:00.000Z")
    assert page_latest([]) is None


def test_a_full_pass_completes_after_the_item_read_even_with_variants_on():
    state = ReadCursor().start_pass(NOW, PHASE_ITEMS).checkpoint(None, parse_iso(T0))
    done = items_read(state, with_variants=True)
    assert done == ReadCursor(cursor=parse_iso(T0), last_pass_started=NOW) and not done.in_pass


def test_an_incremental_pass_reads_changed_variants_after_the_items():
    state = ReadCursor(cursor=parse_iso(T0)).start_pass(NOW, PHASE_ITEMS)
    state = state.checkpoint(None, parse_iso("2024-05-01T11:00:00.000Z"))
    variants = items_read(state, with_variants=True)
    assert variants.phase == PHASE_VARIANTS and variants.next_link is None and variants.in_pass
    assert not items_read(state, with_variants=False).in_pass
    assert variants.complete().cursor == parse_iso("2024-05-01T11:00:00.000Z")


def test_event_carries_variants_and_its_id_changes_with_them():
    v = variant(1, item_id=item(1)["id"])
    event = item_event("default", "c-1", item(1, variants=[v]), with_variants=True)
    assert event["type"] == "bc.item.pulled" and event["subject"] == item(1)["id"]
    assert event["source"] == "bc-connector/default/c-1" and event["time"] == T0
    assert event["data"]["itemVariants"] == [{k: x for k, x in v.items() if k != "@odata.etag"}]
    assert "@odata.etag" not in event["data"]
    same = item_event("default", "c-1", item(1, variants=[dict(v)]), with_variants=True)
    changed = item_event("default", "c-1", item(1, variants=[variant(1, "2024-05-02T00:00:00.000Z")]),
                         with_variants=True)
    assert same["id"] == event["id"] and changed["id"] != event["id"]


def test_event_has_no_variants_key_when_the_option_is_off():
    event = item_event("default", "c-1", item(1, variants=[variant(1)]), with_variants=False)
    assert "itemVariants" not in event["data"]


def test_variant_pages_yield_each_item_once_within_a_two_page_window():
    recent = RecentItemIds()
    first = [variant(1, item_id="A"), variant(2, item_id="a"), variant(3, item_id="B")]
    assert recent.new(first) == ["a", "b"]
    assert recent.new([variant(4, item_id="B"), variant(5, item_id="C")]) == ["c"]
    assert recent.new([variant(6, item_id="C"), variant(7, item_id="D")]) == ["d"]
    assert recent.new([]) == []
    assert recent.new([variant(8, item_id="A")]) == ["a"]  # far apart: re-emitted, same event id


def test_a_pull_request_message_reads_back_as_sent():
    request = ItemPullRequest(connection="emea", requestedAt=NOW, continuation=True)
    assert parse_pull_request(request.model_dump_json()) == request
    assert parse_pull_request('{"connection": "default", "requestedAt": "2024-05-01T12:00:00Z"}') == \
        ItemPullRequest(connection="default", requestedAt=NOW)


@pytest.mark.parametrize("text, problem", [
    ("pull please", "Invalid JSON"),
    ('{"requestedAt": "2024-05-01T12:00:00Z"}', "connection: Field required"),
    ('{"connection": "default", "requestedAt": "2024-05-01T12:00:00"}', "requestedAt: .*timezone"),
    ('{"connection": "default", "requestedAt": "2024-05-01T12:00:00Z", "items": 5}', "items: Extra inputs"),
])
def test_a_message_that_is_not_a_pull_request_is_refused_naming_the_problem(text, problem):
    with pytest.raises(BadPullRequest, match=problem):
        parse_pull_request(text)


def test_the_keys_remembered_for_the_overlap_fit_what_the_cursor_row_believes():
    from datetime import timedelta

    from connector.items.pull import MAX_RECENT, event_key, recent_keys

    now = datetime(2026, 12, 5, 12, tzinfo=UTC)
    seen = [(event_key(str(n)), now) for n in range(MAX_RECENT + 1)]
    kept = recent_keys(seen[:MAX_RECENT], now, 60)
    row = ReadCursor(cursor=now - timedelta(seconds=1), recent=kept).to_row()
    assert ReadCursor.from_row(row, now).recent == kept and len(kept.split(",")) == MAX_RECENT
    assert len(kept) < 32 * 1024  # a table string property's limit (64 KiB of UTF-16)
    assert recent_keys(seen, now, 60) == ""  # one more: re-emitted rather than remembered
