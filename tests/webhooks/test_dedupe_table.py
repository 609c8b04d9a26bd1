"""The dedupe table against Azurite: each entity is announced by one runner, once."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from azure.core.exceptions import ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient

from connector.settings import TABLE_DEDUPE
from connector.storage import table_key
from connector.webhooks.dedupe import DedupeLog, DedupeScope

SCOPE = DedupeScope("default", "8a6b2c1d-3e4f-4a5b-9c6d-7e8f9a0b1c2d", "items")


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def test_of_two_runners_racing_for_the_same_entities_each_entity_goes_to_exactly_one(runtime):
    log = DedupeLog(runtime.storage, 14)
    entities = ids(40)
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda owner: log.hold(SCOPE, entities, owner), ["m1", "m2"])
    assert first.won | second.won == set(entities) and not first.won & second.won
    assert first.busy == second.won and second.busy == first.won  # each sees the other's live claims


def test_a_retry_of_the_same_owner_carries_on_with_its_claims(runtime):
    log = DedupeLog(runtime.storage, 14)
    entities = ids(20)
    assert log.hold(SCOPE, entities, "m1").won == set(entities)
    assert log.hold(SCOPE, entities, "m1").won == set(entities)
    assert log.hold(SCOPE, entities, "m2").won == set()
    assert log.hold(SCOPE, entities, "m2").busy == set(entities)


def test_announced_gone_and_known_entities_are_not_claimed_again(runtime):
    log = DedupeLog(runtime.storage, 14)
    emitted, gone, known, new = ids(15), ids(3), ids(2), ids(5)
    log.hold(SCOPE, emitted + gone, "m1")
    log.settle(SCOPE, emitted, "emitted")
    log.settle(SCOPE, gone, "gone")
    log.settle(SCOPE, known, "known")
    claims = log.hold(SCOPE, emitted + gone + known + new, "m1")
    assert claims.won == set(new) and not claims.busy


def test_gone_markers_past_the_ttl_are_forgotten_and_purged_but_announced_and_known_never(runtime):
    forgetful = DedupeLog(runtime.storage, -1)  # every gone marker is born expired
    emitted, known, gone = ids(20), ids(15), ids(30)
    forgetful.settle(SCOPE, emitted, "emitted")
    forgetful.settle(SCOPE, known, "known")
    forgetful.settle(SCOPE, gone, "gone")
    assert forgetful.purge_gone(SCOPE) == 30
    assert forgetful.hold(SCOPE, emitted + known + gone, "m2").won == set(gone)


class _AnswerLostOnce(RequestsTransport):
    """A real transport to Azurite that drops the answer of the first table transaction after the
    service committed it, as a connection reset does."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        if request.url.endswith("$batch") and not self.lost:
            self.lost += 1
            raise ServiceResponseError("Connection reset by peer")
        return response


def test_settling_survives_a_transaction_whose_answer_was_lost(azurite, runtime):
    runtime.storage.table(TABLE_DEDUPE)  # created as the connector does
    transport = _AnswerLostOnce()
    table = TableClient.from_connection_string(azurite.connection_string, TABLE_DEDUPE, transport=transport)
    storage = SimpleNamespace(table=lambda name: table)
    log = DedupeLog(storage, 14)
    entities = ids(150)
    log.hold(SCOPE, entities, "m1")
    log.settle(SCOPE, entities, "emitted", "m1")
    assert transport.lost == 1
    assert log.hold(SCOPE, entities, "m2").won == set()  # every entity recorded as announced


def test_purging_survives_a_delete_transaction_whose_answer_was_lost(azurite, runtime):
    runtime.storage.table(TABLE_DEDUPE)
    forgetful = DedupeLog(runtime.storage, -1)  # every gone marker is born expired
    gone, emitted = ids(30), ids(5)
    forgetful.settle(SCOPE, gone, "gone")
    forgetful.settle(SCOPE, emitted, "emitted")
    transport = _AnswerLostOnce()
    table = TableClient.from_connection_string(azurite.connection_string, TABLE_DEDUPE, transport=transport)
    purger = DedupeLog(SimpleNamespace(table=lambda name: table), -1)
    assert purger.purge_gone(SCOPE) == 30  # the lost transaction had deleted them: no error either way
    assert transport.lost == 1
    rows = table.query_entities("PartitionKey eq @pk", parameters={"pk": SCOPE.partition})
    assert {r["RowKey"] for r in rows} == {table_key(e.lower()) for e in emitted}  # the rest kept


def test_rows_that_do_not_validate_count_as_absent_or_abandoned_and_are_logged_once(runtime, caplog):
    from azure.data.tables import UpdateMode

    log = DedupeLog(runtime.storage, 14)
    table = runtime.storage.table(TABLE_DEDUPE)
    poisoned = {
        "forever": {"state": "claimed", "owner": "ghost", "claimed_until": "9999-12-31T23:59:59.000000Z"},
        "no-time": {"state": "claimed", "owner": "ghost", "claimed_until": "whenever"},
        "odd-state": {"state": "sleeping", "owner": "ghost"},
        "bad-modified": {"state": "emitted", "owner": "", "modified": "{not a time"},
        "gone-badly": {"state": "gone", "owner": "", "expires_at": "soon"},
    }
    for entity_id, row in poisoned.items():
        table.upsert_entity({"PartitionKey": SCOPE.partition, "RowKey": table_key(entity_id), **row},
                            mode=UpdateMode.REPLACE)
    modified = dict.fromkeys(poisoned, "2026-01-01T00:00:00Z")
    with caplog.at_level("WARNING"):
        claims = log.hold(SCOPE, list(poisoned), "m1", modified)  # today: a ValueError or all busy
        log.hold(SCOPE, list(poisoned), "m2", modified)
    assert claims.won == set(poisoned) and not claims.busy
    warned = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(warned) == 4  # every invalid row once (the bad `modified` is only not believed)
