"""Send Created Sales Order end to end: queue → local host → emulator → results/poison queues."""
from __future__ import annotations

from typing import Any

import pytest

from tests.orders.conftest import SEED_EXAMPLE, EmulatorBC, OrderQueues, new_key

pytestmark = pytest.mark.e2e


def test_seed_example_creates_one_order(order_host: Any, queues: OrderQueues, bc: EmulatorBC) -> None:
    host = order_host()
    queues.send([SEED_EXAMPLE])
    host.wait_idle(30)

    [result] = queues.results()
    assert result["status"] == "created"
    assert result["error"] is None and result["externalDocumentNumber"] is None
    order = bc.order(result["salesOrderId"])
    assert order["number"] == result["number"]
    assert (order["customerNumber"], order["currencyCode"], order["orderDate"]) == ("GL00000008", "GBP",
                                                                                     "2023-09-01")
    assert bc.order_posts() == 1
    assert queues.poison() == []
