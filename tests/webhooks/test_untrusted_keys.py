"""Values from queues, tables and BC answers go into BC URL paths only once checked as keys (issue
11 point 4): a companyId from a `bc-notifications` message, a subscriptionId in PATCH/DELETE paths."""
from __future__ import annotations

import json
from typing import Any

import pytest

from connector.bc.keys import InvalidKey, subscription_path
from connector.orders.send import failure_error, is_permanent
from connector.settings import QUEUE_NOTIFICATIONS, load_settings
from connector.signing import queue_signer, seal_json
from connector.webhooks.processor import plan, process_message

GUID = "26814998-936a-401c-81c1-0e848a64971d"
SUB = "c670ea73cacb459bb51dc1740da2f1db"  # BC's form: 32 hex digits
HOSTILE = ["", "x", f"{GUID})/items?$top=1&x=(", "../../../v2.0/other/production/api/v2.0/companies",
           f"{GUID}/../x", f"{GUID}%2F..", "https://evil.example/", f"'{GUID}'", None, 42, [GUID]]


@pytest.mark.parametrize("company_id", HOSTILE)
def test_a_company_id_that_is_no_guid_never_reaches_a_path(runtime: Any, company_id: Any) -> None:
    bc = runtime.bc("default")
    with pytest.raises(InvalidKey):
        bc.company_path(company_id, "items")


def test_a_guid_company_id_makes_its_path(runtime: Any) -> None:
    assert runtime.bc("default").company_path(GUID, "/items") == f"companies({GUID})/items"


@pytest.mark.parametrize("sub_id", ["", "abc", f"{SUB}')/x", SUB[:-1], f"{SUB}?$x=1", None, 7])
def test_a_subscription_id_that_is_no_bc_key_never_reaches_a_path(sub_id: Any) -> None:
    with pytest.raises(InvalidKey):
        subscription_path(sub_id)


def test_bc_subscription_ids_make_their_paths() -> None:
    assert subscription_path(SUB) == f"subscriptions('{SUB}')"
    assert subscription_path(GUID) == f"subscriptions('{GUID}')"


def test_an_invalid_key_is_a_permanent_failure_with_its_code() -> None:
    error = InvalidKey("companyId", "../x")
    assert is_permanent(error) and failure_error(error).code == "InvalidKey"


def note(company_id: Any, change: str = "created") -> dict[str, Any]:
    return {"connection": "default", "companyId": company_id, "entitySet": "items", "subscriptionId": "s",
            "changeType": change, "resource": f"api/v2.0/companies({GUID})/items({GUID})"}


def test_notes_with_a_company_id_that_is_no_guid_are_skipped() -> None:
    settings = load_settings({"BC_TENANT": "t", "BC_CLIENT_ID": "c", "BC_CLIENT_SECRET": "s"})
    asked = plan([note("../x"), note("../x", "collection"), note("../x", "deleted"), note(GUID)], settings)
    assert [g.company_id for g in asked.created] == [GUID] and asked.collections == [] and not asked.deleted
    assert asked.skipped == {"companyId not a GUID": 3}


def test_a_forged_notifications_message_sends_nothing_to_bc(runtime: Any, emulator: Any) -> None:
    emulator.clear_requests()
    notes = [note(h) for h in HOSTILE] + [note(h, "collection") for h in HOSTILE]
    signer = queue_signer(runtime.settings.token_encryption_keys, QUEUE_NOTIFICATIONS)
    text = seal_json(signer, json.dumps({"notifications": notes}))  # signed: the screening is what is tested
    assert process_message(runtime, text, owner="m-1").emitted == 0
    assert [r for r in emulator.requests if "/companies(" in r.path] == []
