"""`/api/status` in a real headless browser (Debian's chromium + chromedriver, installed by
`make browser`, which `make test` runs): what a person sees, on a phone-sized window."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from connector.bc.timestamps import iso
from connector.settings import (
    QUEUE_SALES_ORDERS_POISON,
    TABLE_CONNECTIONS,
    TABLE_CURSORS,
    TABLE_STATS,
    TABLE_SUBSCRIPTIONS,
)
from tests.auth.browser import QUIET_TIMERS

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TWO_CONNECTIONS = {"BC_CONNECTIONS": "default,emea", "EMEA__BC_GRANT_TYPE": "authorization_code",
                   **QUIET_TIMERS}


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("chromium and chromedriver are missing: run `make browser` (make test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=390,844"):  # a phone's viewport
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_a_person_sees_each_connection_its_sign_in_link_subscriptions_and_poison_replay(
        local_host: Callable[..., Any], azurite: Any, browser: webdriver.Chrome, tmp_path: Path) -> None:
    host = local_host(**TWO_CONNECTIONS)
    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    expires = datetime.now(UTC) + timedelta(days=2, hours=5, minutes=30)
    tables.create_table_if_not_exists(TABLE_SUBSCRIPTIONS).upsert_entity({
        "PartitionKey": "default", "RowKey": "c1:items", "resource": "companies(c1)/items",
        "subscription_id": "sub-1", "expires_at": iso(expires), "status": "active",
        "last_error": "<script>alert('x')</script><b>not bold</b>", "client_state_nonce": "nonce-secret"})
    tables.create_table_if_not_exists(TABLE_CURSORS).upsert_entity({
        "PartitionKey": "default", "RowKey": "items:c1", "cursor": "2026-11-25T10:00:00Z",
        "updated_at": "2026-11-25T10:05:00Z"})
    poison_queue = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(
        QUEUE_SALES_ORDERS_POISON)
    with contextlib.suppress(ResourceExistsError):
        poison_queue.create_queue()
    poison_queue.send_message('{"customerNumber": "bad"}')

    tables.create_table_if_not_exists(TABLE_CONNECTIONS).upsert_entity({
        "PartitionKey": "default", "RowKey": "state", "company_id": "c1",
        "companies": json.dumps([{"id": "c1", "name": "CRONUS UK Ltd.", "displayName": "CRONUS UK Ltd."},
                                 {"id": "c2", "name": "CRONUS USA, Inc."}])})
    hour = datetime.now(UTC).strftime("%Y%m%d%H")
    tables.create_table_if_not_exists(TABLE_STATS).upsert_entity({
        "PartitionKey": "default", "RowKey": f"{hour}|test", "hour": hour,
        "counts": json.dumps({"events": 40, "events.pulled": 120, "orders.created": 7, "orders.failed": 2,
                              "bc.requests": 300, "bc.429": 3, "lag.sum": 90.0, "lag.count": 40})})

    browser.get(f"{host.url}/api/status")

    assert browser.title == "bc-connector status"
    default = browser.find_element(By.CSS_SELECTOR, '[data-connection="default"]')
    emea = browser.find_element(By.CSS_SELECTOR, '[data-connection="emea"]')
    assert "Token: ok" in default.text
    assert "Token: not-signed-in" in emea.text
    sign_in = emea.find_element(By.LINK_TEXT, "Sign in")
    assert sign_in.get_attribute("href").startswith(f"{host.url}/api/auth/login?ticket=")  # one-time link
    assert sign_in.is_displayed()
    assert default.find_elements(By.LINK_TEXT, "Sign in") == []
    verdict = browser.find_element(By.CSS_SELECTOR, "[data-verdict]")
    assert verdict.get_attribute("data-verdict") == "needs-a-person"
    assert verdict.text.startswith("Needs a person")
    assert "2 sales order(s) failed" in verdict.text
    assert "make replay-poison QUEUE=sales-orders" in verdict.text
    assert "emea: token not-signed-in" in verdict.text
    assert verdict.location["y"] < 150  # read first, before any connection
    counts = {c.get_attribute("data-count"): c.text.split("\n")[0]
              for c in default.find_elements(By.CSS_SELECTOR, "[data-count]")}
    assert (counts["orders created"], counts["orders failed"], counts["pulled items"], counts["BC 429s"]) == (
        "7", "2", "120", "3")
    charts = default.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    assert len(charts) == 4 and all(c.find_elements(By.TAG_NAME, "rect") for c in charts)
    assert "Company: CRONUS UK Ltd." in default.text
    assert default.find_element(By.XPATH, ".//abbr[text()='CRONUS UK Ltd.']").get_attribute("title") == "c1"
    row = default.find_element(By.XPATH, ".//tr[td/abbr[@title='companies(c1)/items']]")
    assert row.text.startswith("items in CRONUS UK Ltd.")
    assert "active" in row.text and "2 d 5 h" in row.text
    assert "<script>alert('x')</script><b>not bold</b>" in row.text  # escaped, shown as text
    assert browser.find_elements(By.CSS_SELECTOR, "body script, td b") == []
    assert "nonce-secret" not in browser.page_source
    moved = default.find_element(By.XPATH, ".//tr[td/abbr[@title='items:c1']]//time")
    assert moved.get_attribute("title") == "2026-11-25 10:05:00 UTC" and moved.text.endswith(" ago")
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{3,}", browser.find_element(By.TAG_NAME, "body").text)
    assert browser.find_elements(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]')
    assert "No subscriptions yet." in emea.text
    poison = browser.find_element(By.XPATH, f"//tr[td[text()='{QUEUE_SALES_ORDERS_POISON}']]")
    assert "1" in poison.text and "make replay-poison QUEUE=sales-orders" in poison.text
    # Readable on a phone: nothing wider than the screen.
    wide = browser.execute_script(
        "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > "
        "window.innerWidth + 1).slice(0, 5).map(e => e.tagName + ' ' + e.className + ' ' + "
        "e.getBoundingClientRect().right + ' ' + (e.textContent || '').slice(0, 60))")
    assert wide == [], wide
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth") is True
    shot = tmp_path / "status.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
    assert png_size(shot.read_bytes())[0] <= 390 * 3  # a phone-wide picture (device pixels)
    top = verdict.screenshot_as_png  # the verdict as a person sees it: a red-tinted box
    assert png_size(top)[1] > 20
    assert verdict.value_of_css_property("background-color") in ("rgba(252, 232, 230, 1)",
                                                                 "rgb(252, 232, 230)")
    if os.environ.get("STATUS_SCREENSHOTS"):  # to look at them: STATUS_SCREENSHOTS=<dir>
        Path(os.environ["STATUS_SCREENSHOTS"], "status-phone.png").write_bytes(shot.read_bytes())
        browser.set_window_size(390, 2600)
        browser.save_screenshot(str(Path(os.environ["STATUS_SCREENSHOTS"], "status-phone-long.png")))


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height of a PNG, from its IHDR chunk."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])
