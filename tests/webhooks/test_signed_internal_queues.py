"""Internal queues trusted only when signed (issue 20): `bc-notifications` and `bc-item-pulls` messages
carry the connector's HMAC; an unsigned, altered or foreign-signed one goes to poison with the reason
logged, and nothing reaches BC or the event queues. A `deleted` is announced only after BC answers 404."""
from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from connector.items.pull import ItemPullRequest, request_message
from connector.settings import QUEUE_ITEM_PULLS, QUEUE_ITEMS, QUEUE_NOTIFICATIONS
from connector.signing import UnsignedMessage, open_json, queue_signer, seal_json
from connector.webhooks.notifications import pack_messages
from connector.webhooks.processor import process_message
from devtools.emulator.seed import CRONUS_UK_ID
from tests.conftest import TEST_ENCRYPTION_KEY
from tests.queue_drain import drain_texts

OTHER_KEY = "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg="
MISSING = "0d6bd0a4-2b4e-4a9f-9a5f-3b8f7c2e1d00"  # no such item in the emulator


# ---- pure: seal and open --------------------------------------------------------------------------

def test_a_sealed_message_opens_to_what_was_signed_and_stays_json() -> None:
    signer = queue_signer([TEST_ENCRYPTION_KEY], QUEUE_NOTIFICATIONS)
    text = '{"subscriptions":[["default"]],"changes":[]}'
    sealed = seal_json(signer, text)
    assert json.loads(sealed)["sig"] and open_json(signer, sealed) == text
    rotated = queue_signer(["new-key", TEST_ENCRYPTION_KEY], QUEUE_NOTIFICATIONS)
    assert open_json(rotated, sealed) == text  # an old key still verifies while it is listed


@pytest.mark.parametrize(("make", "why"), [
    (lambda s, t: t, "unsigned"),
    (lambda s, t: seal_json(s, t).replace("default", "emea!!"), "forged"),
    (lambda s, t: seal_json(queue_signer([TEST_ENCRYPTION_KEY], QUEUE_ITEM_PULLS), t), "forged"),
    (lambda s, t: seal_json(queue_signer([OTHER_KEY], QUEUE_NOTIFICATIONS), t), "forged"),
    (lambda s, t: seal_json(s, t)[:-1] + ' }', "unsigned"),
    (lambda s, t: seal_json(s, t).replace('"}', '\ud800"}'), "unsigned"),
])
def test_unsigned_altered_or_foreign_signed_messages_are_refused_naming_why(make, why) -> None:
    signer = queue_signer([TEST_ENCRYPTION_KEY], QUEUE_NOTIFICATIONS)
    with pytest.raises(UnsignedMessage, match=why):
        open_json(signer, make(signer, '{"subscriptions":[["default"]],"changes":[]}'))


# ---- Azurite + emulator --------------------------------------------------------------------------

def notes(change: str, item_id: str) -> list[dict[str, Any]]:
    return [{"connection": "default", "companyId": CRONUS_UK_ID, "entitySet": "items", "subscriptionId": "s",
             "changeType": change, "resource": f"api/v2.0/companies({CRONUS_UK_ID})/items({item_id})",
             "lastModifiedDateTime": "2026-12-01T00:00:00Z"}]


def an_item_id(runtime: Any) -> str:
    return runtime.bc().get(f"companies({CRONUS_UK_ID})/items", {"$top": "1"})["value"][0]["id"]


@pytest.fixture
def deletions(connector_env: Any) -> Any:
    from connector.runtime import get_runtime

    connector_env(ITEM_CHANGE_TYPES="created,updated,deleted", BC_MAX_RETRIES="0")
    return get_runtime()


def test_an_unsigned_deleted_notification_is_kept_on_poison_with_the_reason(deletions, emulator,
                                                                            caplog) -> None:
    runtime = deletions
    [text] = pack_messages(notes("deleted", MISSING))
    emulator.clear_requests()
    with caplog.at_level(logging.ERROR, "connector.webhooks.processor"):
        assert process_message(runtime, text, owner="m-1").emitted == 0
    assert drain_texts(runtime.storage.queue("bc-notifications-poison")) == [text]
    assert "unsigned" in caplog.text and "m-1" in caplog.text
    assert drain_texts(runtime.storage.queue(QUEUE_ITEMS)) == [] and emulator.requests == []


def test_a_notification_signed_with_another_key_is_kept_on_poison(deletions, emulator, caplog) -> None:
    runtime = deletions
    [text] = pack_messages(notes("created", an_item_id(runtime)))
    forged = seal_json(queue_signer([OTHER_KEY], QUEUE_NOTIFICATIONS), text)
    emulator.clear_requests()
    with caplog.at_level(logging.ERROR, "connector.webhooks.processor"):
        assert process_message(runtime, forged, owner="m-2").emitted == 0
    assert drain_texts(runtime.storage.queue("bc-notifications-poison")) == [forged]
    assert "forged" in caplog.text and emulator.requests == []


def test_a_deleted_is_announced_only_once_bc_answers_404(deletions) -> None:
    runtime = deletions
    signer = queue_signer(runtime.settings.token_encryption_keys, QUEUE_NOTIFICATIONS)
    existing = an_item_id(runtime)
    [still_there] = pack_messages(notes("deleted", existing))
    assert process_message(runtime, seal_json(signer, still_there), owner="m-3").emitted == 0
    assert drain_texts(runtime.storage.queue(QUEUE_ITEMS)) == []  # BC still has it: no deleted event

    [gone] = pack_messages(notes("deleted", MISSING))
    assert process_message(runtime, seal_json(signer, gone), owner="m-4").emitted == 1
    [event] = [json.loads(t) for t in drain_texts(runtime.storage.queue(QUEUE_ITEMS))]
    assert (event["type"], event["subject"]) == ("bc.item.deleted", MISSING)


def test_an_unsigned_or_forged_pull_request_is_kept_on_poison_and_pulls_nothing(runtime, caplog) -> None:
    request = ItemPullRequest(connection="default", requestedAt="2026-12-01T00:00:00Z")
    unsigned = request.model_dump_json()
    forged = seal_json(queue_signer([OTHER_KEY], QUEUE_ITEM_PULLS), unsigned)
    with caplog.at_level(logging.ERROR, "connector.items.pull"):
        runtime.item_pull.handle_pull_request(unsigned, "m-5")
        runtime.item_pull.handle_pull_request(forged, "m-6")
    assert drain_texts(runtime.storage.queue("bc-item-pulls-poison")) == [unsigned, forged]
    assert "unsigned" in caplog.text and "forged" in caplog.text
    assert drain_texts(runtime.storage.queue(QUEUE_ITEMS)) == []
    runtime.item_pull.handle_pull_request(request_message(runtime.settings, request), "m-7")  # genuine
    assert drain_texts(runtime.storage.queue(QUEUE_ITEMS))
