"""`/api/status` in a real headless browser (Debian's chromium + chromedriver, installed by
`make browser`, which `make test` runs): what a person sees, on a phone-sized window."""
from __future__ import annotations

import contextlib
import shutil
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
from connector.settings import QUEUE_SALES_ORDERS_POISON, TABLE_CURSORS, TABLE_SUBSCRIPTIONS
from tests.connect.browser import QUIET_TIMERS

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
    row = default.find_element(By.XPATH, ".//tr[td[text()='companies(c1)/items']]")
    assert "active" in row.text and "2 d 5 h" in row.text
    assert "<script>alert('x')</script><b>not bold</b>" in row.text  # escaped, shown as text
    assert browser.find_elements(By.CSS_SELECTOR, "body script, td b") == []
    assert "nonce-secret" not in browser.page_source
    assert "items:c1" in default.text and "2026-11-25T10:05:00Z" in default.text
    assert "No subscriptions yet." in emea.text
    poison = browser.find_element(By.XPATH, f"//tr[td[text()='{QUEUE_SALES_ORDERS_POISON}']]")
    assert "1" in poison.text and "make replay-poison QUEUE=sales-orders" in poison.text
    # Readable on a phone: nothing wider than the screen.
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth") is True
    shot = tmp_path / "status.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
