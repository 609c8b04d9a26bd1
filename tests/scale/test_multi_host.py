"""Several real instances (host processes) on one Azurite and one emulator: work happens once.

The emulator answers 429 at once to any request beyond the 5th in flight for a principal
(`reject_over_concurrency`), so the instances' shared BC budget shows in its request log. Deadlines
are generous and only bound how long an outcome may take to appear; nothing asserts speed.
"""
from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.storage.queue import QueueClient

from connector.settings import QUEUE_ITEM_PULLS, QUEUE_ITEMS
from devtools.emulator.seed import CRONUS_UK_ID
from tests.orders.support import SEED_EXAMPLE, EmulatorBC, OrderQueues, new_key
from tests.queue_drain import drain_texts
from tests.waiting import wait_until
from tests.webhooks.scenario import EmulatedBC, OutQueues

EVERY_3_SECONDS = "*/3 * * * * *"


@pytest.fixture(scope="module")
def emulator(make_emulator: Callable[..., Any]) -> Any:
    """The module's BC: refuses overshoot at once instead of queueing it."""
    return make_emulator(reject_over_concurrency=True)


def bc_requests(emulator: Any) -> list[Any]:
    """BC API requests with a principal (token requests and admin calls left out)."""
    return [r for r in emulator.requests if r.principal is not None]


def visible_and_hidden(connection_string: str, queue: str) -> int:
    """Messages on a queue, running ones (invisible) included."""
    client = QueueClient.from_connection_string(connection_string, queue)
    return client.get_queue_properties().approximate_message_count


def test_orders_are_created_exactly_once_when_an_instance_is_killed_mid_run(
        host_cluster: Callable[..., Any], emulator: Any, azurite: Any) -> None:
    emulator.faults.configure({"latency_seconds": 0.3})
    bc, queues = EmulatorBC(emulator), OrderQueues(azurite.connection_string)
    cluster = host_cluster(3, SALES_ORDER_AMBIGUITY_SECONDS="2")
    emulator.clear_requests()
    keys = [new_key("K") for _ in range(45)]
    queues.send([{**SEED_EXAMPLE, "externalDocumentNumber": key,
                  "salesOrderLines": [{"itemNumber": "1896-S", "quantity": 1 + n % 3}]}
                 for n, key in enumerate(keys)])
    results: list[dict[str, Any]] = []
    wait_until(lambda: results.extend(queues.results()) or len(results) >= 5, 180, "first results")
    cluster.hosts[0].kill()
    answered = lambda: {r["externalDocumentNumber"] for r in results}  # noqa: E731
    wait_until(lambda: results.extend(queues.results()) or answered() >= set(keys), 240,
               f"a result for every order\n{cluster.logs()}")
    emulator.faults.clear()

    per_key = Counter(o["externalDocumentNumber"] for o in bc.orders() if o["externalDocumentNumber"] in keys)
    assert per_key == Counter(keys)  # every order in BC, none twice
    assert {r["status"] for r in results} <= {"created", "duplicate"}
    assert queues.poison() == []
    logged = bc_requests(emulator)
    assert max(r.in_flight for r in logged) <= 5
    assert [r for r in logged if r.status == 429] == []


def test_an_item_pull_requested_on_every_instance_at_once_emits_each_item_once(
        host_cluster: Callable[..., Any], emulator: Any, azurite: Any) -> None:
    cluster = host_cluster(3)
    start = threading.Barrier(len(cluster.hosts))
    answers: list[int] = []

    def request(url: str) -> None:
        start.wait()
        answers.append(requests.post(f"{url}/api/connections/default/pulls/items", timeout=60).status_code)

    threads = [threading.Thread(target=request, args=(h.url,)) for h in cluster.hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [202, 202, 202]

    items_queue = QueueClient.from_connection_string(azurite.connection_string, QUEUE_ITEMS)
    events: list[dict[str, Any]] = []
    wait_until(lambda: visible_and_hidden(azurite.connection_string, QUEUE_ITEM_PULLS) == 0
               and not events.extend(json.loads(t) for t in drain_texts(items_queue))
               and visible_and_hidden(azurite.connection_string, QUEUE_ITEM_PULLS) == 0,
               180, "every requested pull done")
    events.extend(json.loads(t) for t in drain_texts(items_queue))

    in_bc = EmulatedBC(emulator, CRONUS_UK_ID)._company("GET", "items")["value"]
    assert Counter(e["data"]["id"] for e in events) == Counter(i["id"] for i in in_bc)


def test_notifications_spread_over_instances_and_timers_on_every_instance_do_the_work_once(
        host_cluster: Callable[..., Any], emulator: Any, azurite: Any) -> None:
    cluster = host_cluster(3, SUBSCRIPTION_RENEWAL_SCHEDULE=EVERY_3_SECONDS, SWEEP_SCHEDULE=EVERY_3_SECONDS)
    bc = EmulatedBC(emulator, CRONUS_UK_ID)
    url = f"{cluster.front.url}/api/webhooks/bc?connection=default"
    ran = lambda name: [h.log().count(f"{name} (timerTrigger) succeeded") for h in cluster.hosts]  # noqa: E731
    wait_until(lambda: len(bc.subscriptions(url)) == 3 and min(ran("sweep_created")) >= 1, 120,
               f"subscriptions and a first sweep\n{cluster.logs()}")

    items = []
    for _ in range(6):
        items.append(bc.create_item()["id"])
        bc.flush()  # one notification per item: each lands on the next instance
    shipment = bc.post_document("salesShipments")["id"]
    bc.flush()
    queues = OutQueues(azurite.connection_string)
    queues.wait_for(QUEUE_ITEMS, lambda got: {e["subject"] for e in got} >= set(items), 120)
    queues.wait_for("bc-sales-shipments", lambda got: shipment in {e["subject"] for e in got}, 120)
    before = ran("sweep_created")
    wait_until(lambda: all(now >= then + 2 for now, then in zip(ran("sweep_created"), before, strict=True))
               and min(ran("renew_subscriptions")) >= 3, 120, "two more sweeps on every instance")
    queues.take(QUEUE_ITEMS)
    queues.take("bc-sales-shipments")

    # (entities changed just before the sweep's baseline are announced too: by design, once)
    created = Counter(e["subject"] for e in queues.events[QUEUE_ITEMS] if e["type"] == "bc.item.created")
    assert set(items) <= set(created) and set(created.values()) == {1}
    shipments = Counter(e["subject"] for e in queues.events["bc-sales-shipments"])
    assert shipment in shipments and set(shipments.values()) == {1}
    assert len([p for p, n in cluster.front.forwarded.items() if n]) == 3  # notifications spread
    subscription_posts = [r for r in emulator.requests
                          if r.method == "POST" and r.path.endswith("/subscriptions")]
    assert len(subscription_posts) == 3 and len(bc.subscriptions(url)) == 3  # one per trigger
