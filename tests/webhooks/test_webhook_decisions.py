"""The pure decisions behind the webhook triggers: no storage, no HTTP."""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from connector.bc.timestamps import bc_datetime, iso
from connector.settings import load_settings
from connector.webhooks.client_state import client_state, key_id, signing_key
from connector.webhooks.dedupe import hold_verdict
from connector.webhooks.directory import KnownSubscription
from connector.webhooks.notifications import pack_messages, parse_queued
from connector.webhooks.processor import collection_since, entity_id, plan
from connector.webhooks.receiver import GarbledNotification, handshake, parse_body, receive, screen
from connector.webhooks.subscription_plan import (
    Action,
    notification_url,
    plan_subscription,
    server_now,
    stray_subscriptions,
    watched_resource,
)
from connector.webhooks.sweep import hold_before

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
URL = "https://connector.example/api/webhooks/bc"
GUID = "26814998-936a-401c-81c1-0e848a64971d"
COMPANY = "8a6b2c1d-3e4f-4a5b-9c6d-7e8f9a0b1c2d"
SETTINGS = load_settings({"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s"})
RENEW_BEFORE = timedelta(hours=36)


# ---- handshake and body ---------------------------------------------------------------------------

def test_handshake_echoes_exactly_the_token_as_plain_text():
    reply = handshake({"validationToken": "a b+c/="})
    assert (reply.status, reply.body, reply.mimetype) == (200, "a b+c/=", "text/plain")


def test_a_request_without_a_validation_token_is_no_handshake():
    assert handshake({}) is None


@pytest.mark.parametrize("body", [b"", b"not json", b"[1,2]", b'{"value": {}}', b"\xff\xfe",
                                  b'{"values": []}'])
def test_garbled_bodies_are_refused_without_raising_anything_else(body):
    with pytest.raises(GarbledNotification):
        parse_body(body, 1024)


def test_an_oversized_body_is_refused_before_parsing():
    with pytest.raises(GarbledNotification, match="exceeds"):
        parse_body(b'{"value": []}' + b" " * 2000, 1024)


def test_an_oversized_body_is_acknowledged_and_logged_as_an_error_naming_its_size_and_the_sweep(caplog):
    runtime = SimpleNamespace(settings=SimpleNamespace(webhook_max_body_bytes=1024))
    with caplog.at_level(logging.ERROR, logger="connector.webhooks.receiver"):
        assert receive({}, b'{"value": []}' + b" " * 2000, lambda: runtime).status == 202
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "2013 bytes" in record.getMessage() and "sweep" in record.getMessage()


def test_a_body_with_a_bom_is_read():
    assert parse_body(b'\xef\xbb\xbf{"value": [{"a": 1}]}', 1024) == [{"a": 1}]


# ---- clientState and screening --------------------------------------------------------------------

def known(sub_id: str = "s1", keys: tuple[str, ...] = ("key-1",), nonce: str = "n1") -> KnownSubscription:
    return KnownSubscription(sub_id, "default", COMPANY, "items", tuple(client_state(k, nonce) for k in keys))


def element(change: str = "created", sub_id: str = "s1", state: str | None = None) -> dict:
    return {"subscriptionId": sub_id, "clientState": client_state("key-1", "n1") if state is None else state,
            "expirationDateTime": "2026-03-04T00:00:00Z", "changeType": change,
            "resource": f"api/v2.0/companies({COMPANY})/items({GUID})",
            "lastModifiedDateTime": "2026-03-01T00:00:00Z"}


def test_client_state_is_derived_from_key_and_nonce_and_differs_per_nonce():
    assert client_state("k", "n") == client_state("k", "n")
    assert client_state("k", "n") != client_state("k", "m") != client_state("j", "n")
    assert len(client_state("k", "n")) == 43


def test_any_configured_key_is_accepted_for_rotation():
    sub = known(keys=("new", "old"))
    assert sub.accepts(client_state("old", "n1")) and sub.accepts(client_state("new", "n1"))
    assert not sub.accepts(client_state("other", "n1")) and not sub.accepts(None) and not sub.accepts(42)


def test_the_client_state_never_appears_in_a_repr():
    assert client_state("key-1", "n1") not in repr(known())


def test_screening_queues_created_and_collection_and_drops_the_client_state():
    elements = [element("created"), element("collection"), element("updated"), element("deleted")]
    result = screen(elements, {"s1": known()})
    assert [n["changeType"] for n in result.queued] == ["created", "collection"]
    assert all("clientState" not in n for n in result.queued)
    assert result.queued[0] == {
        "connection": "default", "companyId": COMPANY, "entitySet": "items", "subscriptionId": "s1",
        "changeType": "created", "resource": elements[0]["resource"],
        "lastModifiedDateTime": "2026-03-01T00:00:00Z"}
    assert result.ignored == {"updated": 1, "deleted": 1} and not result.refused


def test_screening_queues_updated_and_deleted_only_when_the_trigger_announces_them():
    elements = [element("created"), element("updated"), element("deleted")]
    result = screen(elements, {"s1": known()}, lambda sub, change: change == "deleted")
    assert [n["changeType"] for n in result.queued] == ["created", "deleted"]
    assert result.ignored == {"updated": 1}


def test_forged_unknown_and_malformed_elements_are_refused():
    result = screen([element(state="forged"), element(sub_id="nope"), "x", {"subscriptionId": "s1"},
                     element("renamed")], {"s1": known()})
    assert not result.queued
    assert result.refused == {"clientState mismatch": 1, "unknown subscription": 1, "malformed": 2,
                              "unknown changeType": 1}


def test_notes_are_packed_into_queue_messages_within_the_budget():
    subs = [{"connection": "default", "companyId": COMPANY, "entitySet": "items", "subscriptionId": "s1"},
            {"connection": "other", "companyId": COMPANY, "entitySet": "salesInvoices",
             "subscriptionId": "s2"}]
    notes = [subs[i % 2] | {"changeType": "created", "resource": f"api/v2.0/companies({COMPANY})/items({i})",
                            "lastModifiedDateTime": None if i % 3 else "2026-01-01T00:00:00Z"}
             for i in range(1000)]
    messages = pack_messages(notes, budget=16 * 1024, traceparent="00-ab-cd-01")
    assert all(len(m.encode()) <= 16 * 1024 for m in messages) and len(messages) > 1
    assert [n for m in messages for n in parse_queued(m)] == notes
    assert {json.loads(m)["traceparent"] for m in messages} == {"00-ab-cd-01"}
    assert pack_messages([]) == []


def test_the_compact_form_stores_less_than_half_the_bytes_of_one_object_per_notification():
    note = {"connection": "default", "companyId": COMPANY, "entitySet": "items", "subscriptionId": GUID,
            "changeType": "created", "resource": f"api/v2.0/companies({COMPANY})/items({GUID})",
            "lastModifiedDateTime": "2026-01-01T00:00:00Z"}
    [message] = pack_messages([note] * 100)
    assert len(message) * 2 < len(json.dumps({"notifications": [note] * 100}, separators=(",", ":")))


def test_messages_queued_in_the_earlier_form_are_still_read():
    note = {"connection": "default", "companyId": COMPANY, "entitySet": "items", "subscriptionId": "s1",
            "changeType": "created", "resource": "r", "lastModifiedDateTime": None}
    assert parse_queued(json.dumps({"traceparent": "t", "notifications": [note]})) == [note]


@pytest.mark.parametrize("text", [
    '{"subscriptions": [], "changes": [[0, "created", "r", null]]}',
    '{"subscriptions": [["a", "b", "c"]], "changes": [[0, "created", "r", null]]}',
    '{"subscriptions": [["a", "b", "c", "d"]], "changes": [[true, "created", "r", null]]}',
    '{"subscriptions": [["a", "b", "c", "d"]], "changes": [[-1, "created", "r", null]]}',
    '{"subscriptions": [["a", "b", "c", "d"]], "changes": [[0, "created"]]}',
    '{"subscriptions": {}, "changes": []}',
    '{"changes": {}}',
])
def test_a_malformed_compact_message_is_not_a_bc_notifications_message(text):
    with pytest.raises(ValueError):
        parse_queued(text)


# ---- resources --------------------------------------------------------------------------------------

@pytest.mark.parametrize("resource", [
    f"api/v2.0/companies({COMPANY})/items({GUID})",
    f"/api/v2.0/companies({COMPANY})/items({GUID})",
    f"https://api.businesscentral.dynamics.com/v2.0/t/production/api/v2.0/companies({COMPANY})/items({GUID.upper()})",
    f"companies({COMPANY})/items('{GUID}')",
    f"api/v2.0/companies({COMPANY})/items%28{GUID}%29",
])
def test_the_entity_id_is_the_trailing_guid_of_any_resource_form(resource):
    assert entity_id(resource) == GUID


@pytest.mark.parametrize("resource", [f"api/v2.0/companies({COMPANY})/items", "garbage", ""])
def test_a_resource_without_a_trailing_key_has_no_entity_id(resource):
    assert entity_id(resource) is None


def test_a_collection_filter_is_url_decoded():
    resource = f"api/v2.0/companies({COMPANY})/items?$filter=lastModifiedDateTime%20gt%20" \
               "2026-03-01T10:00:00.950Z"
    assert collection_since(resource) == datetime(2026, 3, 1, 10, 0, 0, 950000, tzinfo=UTC)


@pytest.mark.parametrize("stamp", ["2018-10-15T11:00:00Z", "2018-10-15T11:00:00.000Z"])
def test_bc_s_collection_filter_with_a_bare_datetime_is_understood(stamp):
    # BC percent-encodes the spaces of the filter but not the datetime's colons
    resource = f"https://api.businesscentral.dynamics.com/v2.0/t/production/api/v2.0/companies({COMPANY})" \
               f"/salesInvoices?$filter=lastModifiedDateTime%20gt%20{stamp}"
    assert collection_since(resource) == datetime(2018, 10, 15, 11, tzinfo=UTC)


def test_the_emulator_s_collection_resource_is_understood():
    from devtools.emulator.webhooks import Subscription

    sub = Subscription("s", "t", "production", URL, f"api/v2.0/companies({COMPANY})/items", COMPANY,
                       "items", "", NOW, "", "", "")
    resource = sub.resource_url(since="2026-03-01T10:00:00.950Z")
    assert resource.endswith("items?$filter=lastModifiedDateTime%20gt%202026-03-01T10:00:00.950Z")
    assert collection_since(resource) == datetime(2026, 3, 1, 10, 0, 0, 950000, tzinfo=UTC)


def test_the_docs_typo_and_offsets_in_a_collection_filter_are_understood():
    assert collection_since("x/items?$filter=lastDateTimeModified gt 2018-10-15T11:00:00Z") == \
        datetime(2018, 10, 15, 11, tzinfo=UTC)
    assert collection_since("x?$filter=lastModifiedDateTime%20gt%202026-01-01T01:00:00%2B01:00") == \
        datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("resource", [
    f"api/v2.0/companies({COMPANY})/items",
    "x/items?$filter=number eq '1'",
    "x/items?$filter=lastModifiedDateTime gt yesterday",
    "x/items?$top=3",
])
def test_a_bare_or_unknown_collection_url_means_a_full_resync(resource):
    assert collection_since(resource) is None


def test_plan_groups_ids_once_per_change_and_keeps_collections():
    def note(change: str, resource: str, entity_set: str = "items") -> dict:
        return {"connection": "default", "companyId": COMPANY, "entitySet": entity_set, "changeType": change,
                "resource": resource}
    asked = plan(settings=SETTINGS, notes=[
        note("created", f"x/items({GUID})"), note("created", f"x/items({GUID.upper()})"),
        note("collection", "x/items"), note("created", "x/items"), note("created", f"x({GUID})", "customers"),
        note("updated", f"x/items({GUID})"), note("updated", f"x/items({GUID})"),
        note("deleted", f"x/items({GUID})"),
    ])
    [(group, ids)] = asked.created.items()
    assert (group.entity_set, ids) == ("items", [GUID])
    assert list(asked.updated.values()) == [[GUID]] and [list(d) for d in asked.deleted.values()] == [[GUID]]
    assert [r for _, r in asked.collections] == ["x/items"]
    assert asked.skipped == {"no entity key": 1, "unknown entity set": 1}


# ---- subscriptions --------------------------------------------------------------------------------

KEY_ID = key_id("key-1")


def row(sub_id: str = "s1", key: str = KEY_ID) -> dict:
    return {"subscription_id": sub_id, "client_state_nonce": "n", "client_state_key": key}


def remote(expires: datetime, url: str = URL) -> dict:
    return {"subscriptionId": "s1", "expirationDateTime": iso(expires), "notificationUrl": url}


@pytest.mark.parametrize(("current", "bc_sub", "supported", "action"), [
    (None, None, True, Action.CREATE),
    ({"subscription_id": "", "status": "unsupported"}, None, None, Action.CREATE),
    (row(), None, True, Action.RECREATE),
    (row(), remote(NOW - timedelta(seconds=1)), True, Action.RECREATE),
    (row(), remote(NOW + timedelta(hours=35)), True, Action.RENEW),
    (row(), remote(NOW + timedelta(hours=70)), True, Action.KEEP),
    (row(), remote(NOW + timedelta(hours=70), url="https://old.example/api/webhooks/bc"), True,
     Action.RECREATE),  # the app moved (another PORT, a new public URL): a new subscription there
    (row(key=key_id("retired")), remote(NOW + timedelta(hours=70)), True, Action.RENEW),  # key rotation
    ({"subscription_id": "s1", "client_state_nonce": "n"}, remote(NOW + timedelta(hours=70)), True,
     Action.RENEW),  # a row from before key ids were recorded
    (row(), remote(NOW + timedelta(hours=70)), False, Action.UNSUPPORTED),
    (None, None, False, Action.UNSUPPORTED),
])
def test_subscription_plan(current, bc_sub, supported, action):
    assert plan_subscription(current, bc_sub, supported, NOW, RENEW_BEFORE, URL, KEY_ID) is action


def test_the_key_id_names_a_key_without_revealing_it():
    assert key_id("key-1") == key_id("key-1") != key_id("key-2")
    assert "key-1" not in key_id("key-1") and len(key_id("key-1")) == 16


def test_without_a_token_encryption_key_no_client_state_can_be_derived():
    from connector.webhooks.client_state import MissingClientStateKey

    with pytest.raises(MissingClientStateKey, match="TOKEN_ENCRYPTION_KEY"):
        signing_key(())
    assert signing_key(("new", "old")) == "new"


def test_each_connection_has_its_own_notification_url_on_the_same_receiver():
    from connector.settings import load_settings

    settings = load_settings({"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s",
                              "BC_CONNECTIONS": "default,emea", "PUBLIC_BASE_URL": "https://app.example"})
    assert notification_url(settings, "default") == "https://app.example/api/webhooks/bc?connection=default"
    assert notification_url(settings, "emea") == "https://app.example/api/webhooks/bc?connection=emea"


def test_watched_resource_reads_company_and_entity_set_of_any_form():
    assert watched_resource(f"/api/v2.0/companies({COMPANY})/items") == (COMPANY, "items")
    assert watched_resource(f"https://h/v2.0/t/e/api/v2.0/companies({COMPANY.upper()})/salesInvoices") == \
        (COMPANY, "salesInvoices")
    assert watched_resource("/api/v2.0/subscriptions") is None


def test_strays_are_subscriptions_to_us_for_watched_resources_that_no_row_owns():
    def sub(sub_id: str, entity_set: str = "items", url: str = URL, company: str = COMPANY) -> dict:
        return {"subscriptionId": sub_id, "notificationUrl": url,
                "resource": f"/api/v2.0/companies({company})/{entity_set}"}
    subs = [sub("ours"), sub("stray"), sub("other-url", url="https://elsewhere"),
            sub("customers", "customers"), sub("elsewhere", company="1b2c3d4e-5f60-4718-829a-3b4c5d6e7f80"),
            sub("other-connection", url=f"{URL}?connection=emea")]
    strays = stray_subscriptions(subs, {"ours"}, COMPANY, URL, ["items"])
    assert [s["subscriptionId"] for s in strays] == ["stray"]


def test_bc_time_comes_from_its_date_header_but_never_runs_behind_ours():
    ahead = datetime.now(UTC) + timedelta(days=2)
    assert abs(server_now(ahead.strftime("%a, %d %b %Y %H:%M:%S GMT")) - ahead) < timedelta(seconds=1)
    assert server_now("Mon, 01 Jan 2001 00:00:00 GMT") > datetime(2025, 1, 1, tzinfo=UTC)
    assert server_now(None) > datetime(2025, 1, 1, tzinfo=UTC) and server_now("garbage")


# ---- dedupe and cursors -----------------------------------------------------------------------------

def mark(state: str, owner: str = "m1", claimed_for: float = 60, expires_in: float | None = None) -> dict:
    row = {"state": state, "owner": owner, "claimed_until": iso(NOW + timedelta(seconds=claimed_for))}
    if expires_in is not None:
        row["expires_at"] = iso(NOW + timedelta(seconds=expires_in))
    return row


@pytest.mark.parametrize(("existing", "owner", "verdict"), [
    (None, "m1", "free"),
    (mark("emitted"), "m1", "settled"),
    (mark("known"), "m2", "settled"),
    (mark("gone", expires_in=86400), "m2", "settled"),
    (mark("claimed"), "m1", "free"),  # the owner's retry carries on
    (mark("claimed"), "m2", "busy"),  # someone else is on it
    (mark("claimed", claimed_for=-1), "m2", "free"),  # abandoned claim
    (mark("gone", expires_in=-1), "m2", "free"),  # a gone marker is forgotten after DEDUPE_TTL_DAYS
    # what was announced or existed is never forgotten, even rows written with an expiry long past
    (mark("emitted", expires_in=-400 * 86400), "m2", "settled"),
    (mark("known", expires_in=-400 * 86400), "m2", "settled"),
])
def test_who_may_announce_an_entity(existing, owner, verdict):
    assert hold_verdict(existing, owner, NOW) == verdict


def entity(entity_id: str, seconds: float) -> dict:
    return {"id": entity_id, "lastModifiedDateTime": iso(NOW + timedelta(seconds=seconds))}


def test_the_sweep_holds_the_cursor_just_before_an_entity_another_runner_claimed():
    page = [entity("A", 1), entity("B", 2), entity("C", 3), entity("D", 4)]
    assert hold_before(page, {"c", "b"}) == NOW + timedelta(seconds=2) - timedelta(milliseconds=1)
    assert bc_datetime(hold_before(page, {"c", "b"})) == "2026-03-01T12:00:01.999Z"
    assert hold_before(page, set()) is None
    assert hold_before([{"id": "E"}], {"e"}) is None  # no time: nothing to hold
