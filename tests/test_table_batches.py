"""Group commit of claim-style writes against real Azurite: writes that queue behind one at storage go
out as one transaction, and each still gets its own answer (ETag, or None on a conflict)."""
import threading
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError

from connector.settings import load_storage_settings
from connector.storage import Storage, insert_entity, read_entity
from connector.table_batches import TableBatches
from tests.waiting import wait_until


class GatedTable:
    """The real table client; its first call waits at a gate (so the next writes queue behind it),
    and `fail_next` makes the next transaction fail as a dropped connection would."""

    def __init__(self, table: Any):
        self._table = table
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.transactions: list[int] = []
        self.fail_next = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def _first(self) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.gate.wait(60)

    def create_entity(self, *args: Any, **kw: Any) -> Any:
        self._first()
        return self._table.create_entity(*args, **kw)

    def update_entity(self, *args: Any, **kw: Any) -> Any:
        self._first()
        return self._table.update_entity(*args, **kw)

    def submit_transaction(self, operations: Any, **kw: Any) -> Any:
        operations = list(operations)
        self.transactions.append(len(operations))
        if self.fail_next:
            self.fail_next = False
            raise ServiceRequestError("connection dropped")
        return self._table.submit_transaction(operations, **kw)


@pytest.fixture
def table(azurite):
    from tests.conftest import clear_storage

    clear_storage(azurite.connection_string)
    storage = Storage(load_storage_settings({"AzureWebJobsStorage": azurite.connection_string}))
    return GatedTable(storage.table("bctestbatches"))


def row(key: str, **values: Any) -> dict[str, Any]:
    return {"PartitionKey": "company", "RowKey": key, **values}


def run_behind_a_gate(table: GatedTable, batches: TableBatches, writes: list[Any]) -> dict[int, Any]:
    """Start the first write (it waits at the gate), queue the others behind it, open the gate;
    each write's answer (or the exception it raised) by position."""
    answers: dict[int, Any] = {}

    def call(i: int) -> None:
        try:
            answers[i] = writes[i]()
        except Exception as exc:  # the test looks at it
            answers[i] = exc

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    assert table.entered.wait(30)
    for i in range(1, len(writes)):
        threads.append(threading.Thread(target=call, args=(i,)))
        threads[-1].start()
    wait_until(lambda: batches.pending() == len(writes) - 1, timeout=30)
    table.gate.set()
    for t in threads:
        t.join(60)
    return answers


def test_writes_queued_behind_one_go_out_as_one_transaction_each_with_its_own_etag(table):
    batches = TableBatches()
    writes = [lambda i=i: batches.create(table, row(f"k{i}", owner=f"m{i}")) for i in range(12)]
    answers = run_behind_a_gate(table, batches, writes)
    assert table.transactions == [11]  # the first alone, the eleven behind it together
    assert batches.calls == 2 and batches.writes == 12
    for i in range(12):
        entity, etag = read_entity(table, "company", f"k{i}")
        assert entity["owner"] == f"m{i}" and answers[i] == etag


def test_a_conflict_in_a_transaction_answers_that_write_alone_and_the_rest_are_written(table):
    insert_entity(table._table, row("taken", owner="earlier"))
    stale = insert_entity(table._table, row("changed", owner="first"))
    assert stale and table._table.update_entity(row("changed", owner="second"))
    fresh = insert_entity(table._table, row("kept", owner="first"))
    batches = TableBatches()
    writes = [
        lambda: batches.create(table, row("a", owner="a")),
        lambda: batches.create(table, row("b", owner="b")),
        lambda: batches.create(table, row("taken", owner="late")),
        lambda: batches.replace(table, row("changed", owner="stale"), stale),
        lambda: batches.replace(table, row("kept", owner="second"), fresh),
        lambda: batches.create(table, row("c", owner="c")),
    ]
    answers = run_behind_a_gate(table, batches, writes)
    assert answers[2] is None and answers[3] is None  # exists / changed since: as single calls say
    assert read_entity(table, "company", "taken")[0]["owner"] == "earlier"
    assert read_entity(table, "company", "changed")[0]["owner"] == "second"
    for i, key in ((0, "a"), (1, "b"), (4, "kept"), (5, "c")):
        entity, etag = read_entity(table, "company", key)
        assert answers[i] == etag and entity["owner"] in (key, "second")


def test_two_writes_of_one_row_never_share_a_transaction(table):
    batches = TableBatches()
    writes = [lambda: batches.create(table, row("first", owner="x")),
              lambda: batches.create(table, row("same", owner="one")),
              lambda: batches.create(table, row("same", owner="two")),
              lambda: batches.create(table, row("other", owner="y"))]
    answers = run_behind_a_gate(table, batches, writes)
    assert sorted(a is None for a in (answers[1], answers[2])) == [False, True]  # one wins
    assert answers[0] and answers[3]
    assert all(n <= 2 for n in table.transactions)


def test_a_transaction_lost_in_transport_raises_to_every_write_of_it(table):
    batches = TableBatches()
    table.fail_next = True
    writes = [lambda: batches.create(table, row("alone", owner="x"))] + [
        lambda i=i: batches.create(table, row(f"lost{i}", owner="y")) for i in range(3)]
    answers = run_behind_a_gate(table, batches, writes)
    assert answers[0] and all(isinstance(answers[i], ServiceRequestError) for i in (1, 2, 3))
    # the lane is free again: the next write goes through
    assert batches.create(table, row("after", owner="z"))
