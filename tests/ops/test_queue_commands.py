"""`python -m connector peek` and `replay-poison` against Azurite: what an operator reads, what stays."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.queue import QueueClient, QueueServiceClient

from connector.__main__ import main
from connector.ops.queues import pretty
from tests.conftest import clear_storage

RESULT = {"externalDocumentNumber": "WEB-1", "status": "created", "salesOrderId": "a1",
          "number": "S-ORD101005", "error": None}


@pytest.fixture
def storage_env(azurite: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Only the storage setting, as an operator's shell would have it; storage emptied first."""
    clear_storage(azurite.connection_string)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    return azurite.connection_string


@pytest.fixture
def queue(storage_env: str) -> Callable[[str], QueueClient]:
    def make(name: str) -> QueueClient:
        client = QueueClient.from_connection_string(storage_env, name)
        if name not in queue_names(storage_env):
            client.create_queue()
        return client
    return make


def queue_names(connection_string: str) -> set[str]:
    return {q.name for q in QueueServiceClient.from_connection_string(connection_string).list_queues()}


def test_peek_prints_each_message_indented_and_leaves_it_on_the_queue(
        queue: Callable[[str], QueueClient], capsys: pytest.CaptureFixture[str]) -> None:
    results = queue("sales-order-results")
    results.send_message(json.dumps(RESULT))
    results.send_message('{"note": "naïve – €"}')

    assert main(["peek", "sales-order-results"]) == 0

    out = capsys.readouterr()
    assert out.out == json.dumps(RESULT, indent=2) + "\n" + '{\n  "note": "naïve – €"\n}\n'
    assert "peeked at 2 message(s) on sales-order-results" in out.err
    assert len(results.peek_messages(max_messages=32)) == 2


def test_peek_with_take_consumes_the_messages(
        queue: Callable[[str], QueueClient], capsys: pytest.CaptureFixture[str]) -> None:
    results = queue("sales-order-results")
    for n in range(3):
        results.send_message(json.dumps(RESULT | {"number": f"S-{n}"}))

    assert main(["peek", "sales-order-results", "--take", "--max", "2"]) == 0

    printed = capsys.readouterr().out
    assert '"number": "S-0"' in printed and '"number": "S-1"' in printed and "S-2" not in printed
    [left] = results.peek_messages(max_messages=32)
    assert json.loads(left.content)["number"] == "S-2"


def test_peek_waits_for_a_message_that_arrives_later(
        queue: Callable[[str], QueueClient], capsys: pytest.CaptureFixture[str]) -> None:
    results = queue("sales-order-results")
    sender = threading.Timer(1.0, lambda: results.send_message(json.dumps(RESULT)))
    sender.start()
    try:
        assert main(["peek", "sales-order-results", "--wait", "60"]) == 0
    finally:
        sender.join()

    assert json.loads(capsys.readouterr().out) == RESULT


def test_peek_that_waited_in_vain_exits_1(queue: Callable[[str], QueueClient],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    queue("sales-order-results")

    assert main(["peek", "sales-order-results", "--wait", "0.5"]) == 1

    out = capsys.readouterr()
    assert out.out == ""
    assert "peeked at 0 message(s)" in out.err


def test_peek_of_an_empty_queue_without_wait_succeeds(storage_env: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["peek", "bc-items"]) == 0
    assert capsys.readouterr().out == ""


def test_peek_of_an_unknown_queue_is_an_error_that_creates_nothing(
        storage_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["peek", "sales-order-result"])

    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown queue 'sales-order-result'" in err and "sales-order-results" in err
    assert queue_names(storage_env) == set()


@pytest.mark.parametrize("name, says", [
    ("nope", "'nope' is not a queue with a poison queue; replay one of: sales-orders"),
    ("sales-order-results", "'sales-order-results' is not a queue with a poison queue"),
    ("sales-orders-poison", "name the queue to refill, not its poison queue: sales-orders"),
])
def test_replay_of_a_queue_without_a_poison_queue_is_an_error_that_moves_nothing(
        storage_env: str, capsys: pytest.CaptureFixture[str], name: str, says: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["replay-poison", name])

    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "moved" not in err
    assert queue_names(storage_env) == set()


def test_replay_poison_refills_a_notification_queue_too(
        queue: Callable[[str], QueueClient], capsys: pytest.CaptureFixture[str]) -> None:
    queue("bc-notifications-poison").send_message('{"value": []}')

    assert main(["replay-poison", "bc-notifications"]) == 0

    assert "moved 1 message(s)" in capsys.readouterr().out
    [moved] = queue("bc-notifications").peek_messages()
    assert moved.content == '{"value": []}'


def test_pretty_keeps_text_that_is_not_json_as_it_is() -> None:
    assert pretty("{not json") == "{not json"
    assert pretty('[1, {"a": "é"}]') == '[\n  1,\n  {\n    "a": "é"\n  }\n]'


HOSTILE_TEXTS = ["\x1b]0;owned\x07\x1b[2J\x1b[31mred", '{"note": "\\u001b[2J\\u009b31m\\u202egnp.exe"}',
                 '{"customerNumber": "\u009b2J\u202e\u2028x"}', "line\r\noverwritten\x08\x7f"]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_pretty_writes_terminal_controls_escaped(text: str) -> None:
    shown = pretty(text)
    assert not any(c in shown for c in "\x1b\x07\x9b\u202e\u2028\r\x08\x7f")
    assert "\\u001b" in shown or "\\u009b" in shown or "\\u000d" in shown


def test_peek_of_a_poison_message_full_of_escapes_prints_none_of_them(
        queue: Callable[[str], QueueClient], capsys: pytest.CaptureFixture[str]) -> None:
    poison = queue("sales-orders-poison")
    for text in HOSTILE_TEXTS[1:3] + ["\u009b2J\u202e not JSON \u2028 owned"]:  # what a queue can hold (XML)
        poison.send_message(text)
    assert main(["peek", "sales-orders-poison"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out and "\u2028" not in out
    assert "gnp.exe" in out and "owned" in out  # the text is all there, only escaped
