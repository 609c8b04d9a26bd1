"""The lean queue sender: 429/5xx are retried after the service's Retry-After, other answers fail at
once with their status, and each credential kind authorizes the way Storage expects (messages on
Azurite: tests/test_storage.py)."""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.queue import QueueClient

from connector.queue_sender import QueueSender, authorizer


class _Scripted(BaseHTTPRequestHandler):
    answers: list[tuple[int, dict[str, str]]] = []
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        self.seen.append(self.path)
        self.rfile.read(int(self.headers["Content-Length"]))
        status, headers = self.answers.pop(0)
        self.send_response(status)
        for name, value in {**headers, "Content-Length": "0"}.items():
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Scripted.seen = []
    client = SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}/acct/q", credential=None,
                             account_name="acct", queue_name="q")
    yield client
    server.shutdown()


def test_throttled_and_unavailable_answers_are_retried_after_retry_after(scripted):
    _Scripted.answers = [(429, {"Retry-After": "3"}), (503, {}), (201, {})]
    pauses: list[float] = []
    QueueSender(scripted, sleep=pauses.append).send("m")
    assert 3.0 <= pauses[0] <= 3.1 and 0.4 <= pauses[1] <= 0.8  # Retry-After, then the 2nd back-off
    assert _Scripted.seen == ["/acct/q/messages"] * 3


def test_a_rejected_message_fails_at_once_with_its_status(scripted):
    _Scripted.answers = [(400, {})]
    with pytest.raises(HttpResponseError) as failed:
        QueueSender(scripted, sleep=pytest.fail).send("m")
    assert failed.value.status_code == 400


def test_retries_are_bounded(scripted):
    _Scripted.answers = [(500, {})] * 3
    with pytest.raises(HttpResponseError):
        QueueSender(scripted, retries=2, sleep=lambda s: None).send("m")
    assert len(_Scripted.seen) == 3


def test_an_account_key_signs_an_add_only_queue_sas():
    client = QueueClient.from_connection_string("UseDevelopmentStorage=true", "q")
    query, headers, until = authorizer(client)(datetime(2026, 1, 1, tzinfo=UTC))
    assert "sp=a" in query and "sig=" in query and headers == {}
    assert until == datetime(2026, 1, 1, 1, tzinfo=UTC)


def test_a_token_credential_gives_a_bearer_token():
    token = SimpleNamespace(token="tok", expires_on=datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    credential = SimpleNamespace(get_token=lambda scope: token)
    client = SimpleNamespace(credential=credential, account_name="a", queue_name="q")
    query, headers, until = authorizer(client)(datetime(2025, 12, 31, tzinfo=UTC))
    assert (query, headers) == ("", {"Authorization": "Bearer tok"})
    assert until == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_deleting_sender_also_signs_process_permission():
    client = QueueClient.from_connection_string("UseDevelopmentStorage=true", "q")
    query, _, _ = authorizer(client, delete=True)(datetime(2026, 1, 1, tzinfo=UTC))
    assert "sp=ap" in query


def test_a_received_message_is_deleted_with_its_pop_receipt_on_azurite(azurite):
    client = QueueClient.from_connection_string(azurite.connection_string, "lean-delete")
    client.create_queue()
    sender = QueueSender(client, deletes=True)
    sender.send("first")
    sender.send("second")
    received = list(client.receive_messages(messages_per_page=2, max_messages=2, visibility_timeout=1))
    assert sorted(m.content for m in received) == ["first", "second"]
    sender.delete(received[0].id, received[0].pop_receipt)
    with pytest.raises(HttpResponseError) as stale:  # a receipt that is no longer current
        sender.delete(received[0].id, received[0].pop_receipt)
    assert stale.value.status_code == 404
    deadline = time.monotonic() + 60
    left: list[str] = []
    while not left and time.monotonic() < deadline:  # the other one is back after its visibility timeout
        left = [m.content for m in client.receive_messages(max_messages=5)]
        time.sleep(0.1)
    assert left == [received[1].content]
    sender.close()


def test_a_sent_message_has_its_id_and_waits_out_its_visibility_timeout_on_azurite(azurite):
    client = QueueClient.from_connection_string(azurite.connection_string, "lean-ids")
    client.create_queue()
    sender = QueueSender(client)
    now_id = sender.send("now")
    later_id = sender.send("later", visibility_timeout=3600, time_to_live=-1)
    assert now_id and later_id and now_id != later_id
    visible = list(client.peek_messages(max_messages=5))
    assert [(m.id, m.content) for m in visible] == [(now_id, "now")]  # the other one is hidden for an hour
    sender.close()
