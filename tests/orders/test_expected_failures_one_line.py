"""Expected failures are one log line with the reason and the fix; stack traces only for the
unexpected (issue 27, row 4: a wrong secret made one order print five ~48-line tracebacks)."""
from __future__ import annotations

import logging

import pytest
from azure.core.exceptions import ServiceRequestError

from connector.bc.errors import TokenUnavailable
from devtools.localhost.functions import expected
from tests.orders.support import OrderQueues
from tests.waiting import wait_until

ORDER = {"externalDocumentNumber": "ONE-LINE-1", "customerNumber": "GL00000008",
         "salesOrderLines": [{"itemNumber": "1896-S", "quantity": 1}]}


def test_a_wrong_secret_fails_an_order_in_one_line_per_attempt_without_a_stack_trace(
        fast_retry_host, queues: OrderQueues, caplog: pytest.LogCaptureFixture):
    fast_retry_host(BC_CLIENT_SECRET="not-the-secret")
    caplog.set_level(logging.INFO)
    queues.send([ORDER])

    poisoned: list[str] = []
    wait_until(lambda: poisoned.extend(queues.poison()) or poisoned, timeout=120,
               what="the order on sales-orders-poison after the host's retries")

    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud, caplog.text
    assert [r.getMessage() for r in loud if r.exc_info] == []  # no stack trace anywhere
    assert all("\n" not in r.getMessage() for r in loud)
    about_the_order = [r.getMessage() for r in loud if "ONE-LINE-1" in r.getMessage()
                       or "send_created_sales_order" in r.getMessage()]
    assert about_the_order and all("BC_CLIENT_SECRET" in m for m in about_the_order)  # the fix, each time


def test_what_counts_as_expected():
    assert expected(TokenUnavailable("default", "credentials-refused", "check BC_CLIENT_SECRET"))
    assert expected(ServiceRequestError("Connection refused"))
    assert not expected(ValueError("a bug"))
    assert not expected(KeyError("x"))
