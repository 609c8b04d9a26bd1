"""Anonymous bodies are priced up front (issue 20): the host refuses a body over
FUNCTIONS_REQUEST_BODY_SIZE_LIMIT before any function runs; the receiver refuses a body holding more
than MAX_ELEMENTS notifications before parsing it (202, BC never sees a 4xx); the sign-in callback
refuses an oversized form with its 400/413 page, never a 500."""
from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from connector.webhooks import receiver
from connector.webhooks.receiver import MAX_ELEMENTS, OversizedNotification, parse_body
from tests.webhooks.test_hostile_webhook_bodies import element

FOUR_MIB = 4 * 1024 * 1024


def empty_objects(size: int) -> bytes:
    """`{"value": [{},{},...]}` of about `size` bytes: 1.4 M objects in 4 MiB."""
    return b'{"value": [' + b",".join([b"{}"] * (size // 3)) + b"]}"


def test_a_body_of_a_million_empty_objects_is_refused_before_it_is_parsed(monkeypatch) -> None:
    def parsed(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the body was parsed")

    monkeypatch.setattr(receiver.json, "loads", parsed)
    with pytest.raises(OversizedNotification, match="not parsed"):
        parse_body(empty_objects(FOUR_MIB - 100), FOUR_MIB)


def test_more_elements_than_the_cap_are_refused_after_parsing_few_values() -> None:
    body = json.dumps({"value": [1] * (MAX_ELEMENTS + 1)}).encode()
    with pytest.raises(OversizedNotification, match=f"more than {MAX_ELEMENTS}"):
        parse_body(body, FOUR_MIB)


def test_the_element_cap_leaves_room_over_bcs_collection_threshold_and_fits_real_bundles() -> None:
    """BC sends at most 999 single notifications per subscription (1,000 become one `collection`)."""
    assert MAX_ELEMENTS >= 10 * 1000
    bundle = json.dumps({"value": [element(clientState="c" * 200) for _ in range(MAX_ELEMENTS)]}).encode()
    assert len(parse_body(bundle, 16 * FOUR_MIB)) == MAX_ELEMENTS  # BC-shaped elements: not refused


@pytest.mark.e2e
def test_priced_bodies_through_the_local_host(local_host: Any) -> None:
    host = local_host()
    receiver_url, callback = f"{host.url}/api/webhooks/bc", f"{host.url}/api/auth/callback"

    assert requests.post(receiver_url, data=empty_objects(FOUR_MIB - 100), timeout=60).status_code == 202
    over_host_limit = b'{"value": []}' + b" " * (8 * 1024 * 1024)
    assert requests.post(f"{host.url}/api/auth/callback", data=over_host_limit, timeout=60).status_code == 413

    form = "&".join(f"f{i}=v" for i in range(25))
    refused = requests.post(callback, data=form, timeout=30,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 400 and "more than 20 fields" in refused.text
    big_form = "state=" + "s" * 20000
    assert requests.post(callback, data=big_form, timeout=30,
                         headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 413
    many_params = requests.get(callback, params={f"p{i}": "v" for i in range(25)}, timeout=30)
    assert many_params.status_code == 400
